// Image files, decoded with stb_image (PNG, JPEG, BMP, GIF, TGA, PNM, PSD, HDR), and folders of
// them in the ImageFolder layout:
//   ROOT/<class name>/<any file name>     one sub-folder per class, classes sorted by name
// Every image is converted to the channels asked for (1: grayscale by stb_image's luma weights;
// 3: RGB, a gray image repeated) and, when its size differs, resized with bilinear
// interpolation (half-pixel centres, as torch.nn.functional.interpolate(mode="bilinear",
// align_corners=False); no anti-aliasing) — images are resized, never rejected for their size.
#pragma once
#include <string>
#include <string_view>

#include "data/image_set.h"

namespace qkv::data {

// One image as u8 [C, H, W] of `shape`. A file that is missing or not a decodable image is an
// error naming the file.
Tensor load_image(const std::string& path, const ImageShape& shape);
// The same for an image file's bytes in memory; errors name it `what`.
Tensor decode_image(std::string_view bytes, const ImageShape& shape, const std::string& what);
// Pixels u8 [height, width, channels] (row-major, as decoders and numpy hold them; channels 1
// gray, 2 gray+alpha, 3 RGB, 4 RGBA; alpha is dropped) as u8 [C, H, W] of `shape`, converted
// and resized as above. std::invalid_argument for an empty image or another channel count.
Tensor image_from_pixels(const uint8_t* hwc, int64_t height, int64_t width, int64_t channels,
                         const ImageShape& shape);

// x f32 [C, h, w] -> f32 [C, height, width] (see above).
Tensor resize_bilinear(const Tensor& x, int64_t height, int64_t width);

// Reads ROOT as above. Hidden files (".name") are skipped; any other file must be an image.
// An empty class folder, a ROOT without class folders, or (when `classes` is given) a class
// folder whose name is not in `classes` is an error naming the folder.
ImageSet read_image_folder(const std::string& root, const ImageShape& shape,
                           const std::vector<std::string>& classes = {});

}  // namespace qkv::data
