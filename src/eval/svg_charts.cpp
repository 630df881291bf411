// SVG pictures written as plain text: the confusion matrix, the training curves and the
// experts' load.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "eval/image_eval.h"

namespace qkv::eval {

namespace {

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

std::string num(double v, int decimals = 1) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(decimals);
  os << v;
  return os.str();
}

std::string text(double x, double y, const std::string& s, const std::string& attrs = "") {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" " + attrs + ">" + xml_escape(s) +
         "</text>\n";
}

// A "nice" tick step for a range: 1, 2 or 5 times a power of ten, about 5 ticks.
double tick_step(double range) {
  double raw = range / 5, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

struct Series {
  std::string name, colour;
  std::vector<std::pair<double, double>> points;  // (update, value)
};

// One chart at (x0, y0) of size w x h with axes, ticks, a legend and the series as lines.
std::string line_chart(double x0, double y0, double w, double h, const std::string& title,
                       const std::vector<Series>& series) {
  double xmin = 0, xmax = 1, ymin = INFINITY, ymax = -INFINITY;
  for (const auto& s : series)
    for (auto [x, y] : s.points) {
      xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
  if (!(ymin <= ymax)) ymin = 0, ymax = 1;
  if (ymax - ymin < 1e-9) ymin -= 0.5, ymax += 0.5;
  double pad = 0.05 * (ymax - ymin);
  ymin -= pad, ymax += pad;
  double left = x0 + 60, right = x0 + w - 10, top = y0 + 30, bottom = y0 + h - 40;
  auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * (right - left); };
  auto py = [&](double y) { return bottom - (y - ymin) / (ymax - ymin) * (bottom - top); };

  std::string out = text(x0 + w / 2, y0 + 18, title, "text-anchor=\"middle\" font-size=\"15\"");
  out += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(right - left) +
         "\" height=\"" + num(bottom - top) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  double ys = tick_step(ymax - ymin);
  int ydec = ys >= 1 ? 0 : int(std::ceil(-std::log10(ys)));
  for (double t = std::ceil(ymin / ys) * ys; t <= ymax; t += ys) {
    out += "<line x1=\"" + num(left) + "\" x2=\"" + num(right) + "\" y1=\"" + num(py(t)) +
           "\" y2=\"" + num(py(t)) + "\" stroke=\"#ddd\"/>\n";
    out += text(left - 5, py(t) + 4, num(t, ydec), "text-anchor=\"end\" font-size=\"11\"");
  }
  double xs = tick_step(xmax - xmin);
  for (double t = 0; t <= xmax; t += xs)
    out += text(px(t), bottom + 15, num(t, 0), "text-anchor=\"middle\" font-size=\"11\"");
  out += text((left + right) / 2, bottom + 32, "update", "text-anchor=\"middle\" font-size=\"12\"");
  double ly = top + 15;
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    std::string pts;
    for (auto [x, y] : s.points) pts += num(px(x)) + "," + num(py(y)) + " ";
    out += "<polyline fill=\"none\" stroke=\"" + s.colour + "\" stroke-width=\"1.8\" points=\"" +
           pts + "\"/>\n";
    if (s.points.size() == 1)
      out += "<circle cx=\"" + num(px(s.points[0].first)) + "\" cy=\"" +
             num(py(s.points[0].second)) + "\" r=\"3\" fill=\"" + s.colour + "\"/>\n";
    out += "<line x1=\"" + num(right - 150) + "\" x2=\"" + num(right - 130) + "\" y1=\"" +
           num(ly - 4) + "\" y2=\"" + num(ly - 4) + "\" stroke=\"" + s.colour +
           "\" stroke-width=\"3\"/>\n";
    out += text(right - 125, ly, s.name, "font-size=\"12\"");
    ly += 16;
  }
  return out;
}

std::string svg_document(double w, double h, const std::string& body) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(w, 0) + "\" height=\"" +
         num(h, 0) + "\" viewBox=\"0 0 " + num(w, 0) + " " + num(h, 0) +
         "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" +
         body + "</svg>\n";
}

}  // namespace

std::string confusion_svg(const ClassificationReport& r) {
  int64_t k = int64_t(r.classes.size());
  double cell = std::max(28.0, std::min(60.0, 600.0 / double(k))), label_w = 150;
  double left = label_w + 30, top = 60 + label_w;
  double w = left + cell * double(k) + 20, h = top + cell * double(k) + 40;
  std::string body = text(w / 2, 24,
                          "Confusion matrix: " + num(r.accuracy(), 2) + "% of " +
                              std::to_string(r.total) + " images correct",
                          "text-anchor=\"middle\" font-size=\"16\"");
  body += text(left + cell * double(k) / 2, 46, "predicted class",
               "text-anchor=\"middle\" font-size=\"13\"");
  body += text(14, top + cell * double(k) / 2, "true class",
               "text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 14 " +
                   num(top + cell * double(k) / 2) + ")\"");
  for (int64_t i = 0; i < k; ++i) {
    int64_t row_total = 0;
    for (int64_t j = 0; j < k; ++j) row_total += r.confusion[size_t(i * k + j)];
    double cy = top + cell * double(i);
    body += text(left - 6, cy + cell / 2 + 4, r.classes[size_t(i)],
                 "text-anchor=\"end\" font-size=\"12\"");
    double cx = left + cell * double(i) + cell / 2;
    body += text(cx, top - 6, r.classes[size_t(i)],
                 "font-size=\"12\" transform=\"rotate(-60 " + num(cx) + " " + num(top - 6) + ")\"");
    for (int64_t j = 0; j < k; ++j) {
      int64_t n = r.confusion[size_t(i * k + j)];
      double f = row_total > 0 ? double(n) / double(row_total) : 0;
      // White to dark blue by the share of the true class's images.
      int red = int(255 - 225 * f), green = int(255 - 175 * f), blue = int(255 - 80 * f);
      char colour[8];
      std::snprintf(colour, sizeof colour, "#%02x%02x%02x", red, green, blue);
      double x = left + cell * double(j);
      body += "<rect x=\"" + num(x) + "\" y=\"" + num(cy) + "\" width=\"" + num(cell) +
              "\" height=\"" + num(cell) + "\" fill=\"" + colour + "\" stroke=\"#bbb\"/>\n";
      body += text(x + cell / 2, cy + cell / 2 + 4, std::to_string(n),
                   "text-anchor=\"middle\" font-size=\"11\" fill=\"" +
                       std::string(f > 0.5 ? "white" : "black") + "\"");
    }
  }
  return svg_document(w, h, body);
}

std::string training_curves_svg(const std::string& metrics_jsonl) {
  std::ifstream in(metrics_jsonl);
  if (!in) throw std::runtime_error(metrics_jsonl + ": cannot open for reading");
  Series train{"training loss (smoothed)", "#1f77b4", {}}, valid{"validation loss", "#d62728", {}};
  std::map<std::string, Series> scores;
  const char* colours[] = {"#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(metrics_jsonl + ":" + std::to_string(line_no) + ": not JSON");
    }
    std::string event = j.value("event", "");
    if (event == "update") {
      train.points.emplace_back(j.at("update").get<double>(), j.at("loss").get<double>());
    } else if (event == "valid") {
      double u = j.at("update").get<double>();
      valid.points.emplace_back(u, j.at("valid_loss").get<double>());
      for (const auto& [key, v] : j.items())
        if (v.is_number() && key != "epoch" && key != "update" && key != "valid_loss") {
          Series& s = scores[key];
          if (s.name.empty()) s = {key, colours[scores.size() % 4], {}};
          s.points.emplace_back(u, v.get<double>());
        }
    }
  }
  if (train.points.empty())
    throw std::runtime_error(metrics_jsonl + ": holds no training updates to plot");
  // A restarted run logs updates again from its checkpoint: keep the last value of each update.
  for (Series* s : {&train, &valid}) {
    std::map<double, double> last;
    for (const auto& p : s->points) last[p.first] = p.second;
    s->points.assign(last.begin(), last.end());
  }
  std::vector<Series> score_series;
  for (auto& [key, s] : scores) score_series.push_back(s);
  double w = score_series.empty() ? 560 : 1100, h = 380;
  std::string body = line_chart(0, 0, 550, h, "Loss (cross-entropy)", {train, valid});
  if (!score_series.empty()) body += line_chart(550, 0, 550, h, "Validation score", score_series);
  return svg_document(w, h, body);
}

std::string expert_load_svg(const std::vector<std::vector<double>>& load,
                            const std::string& title) {
  size_t experts = 0;
  double top = 0;
  for (const auto& layer : load) {
    experts = std::max(experts, layer.size());
    for (double share : layer) top = std::max(top, share);
  }
  if (experts == 0) throw std::invalid_argument("expert_load_svg: no expert load to plot");
  top = std::max(top, 1.0 / double(experts)) * 1.1;
  const double bar = 14, gap = 24, left = 60, chart_top = 50, chart_h = 220;
  double w = left + double(load.size()) * (double(experts) * bar + gap) + 20,
         h = chart_top + chart_h + 60;
  w = std::max(w, 420.0);
  auto y_of = [&](double share) { return chart_top + chart_h * (1 - share / top); };
  std::string body = text(w / 2, 24, title, "text-anchor=\"middle\" font-size=\"15\"");
  double step = tick_step(100 * top) / 100;
  for (double t = 0; t <= top + 1e-12; t += step) {
    body += "<line x1=\"" + num(left) + "\" x2=\"" + num(w - 20) + "\" y1=\"" + num(y_of(t)) +
            "\" y2=\"" + num(y_of(t)) + "\" stroke=\"#eee\"/>\n";
    body +=
        text(left - 6, y_of(t) + 4, num(100 * t, 0) + "%", "text-anchor=\"end\" font-size=\"11\"");
  }
  const char* colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                           "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
  for (size_t l = 0; l < load.size(); ++l) {
    double x0 = left + 10 + double(l) * (double(experts) * bar + gap);
    for (size_t e = 0; e < load[l].size(); ++e) {
      double y = y_of(load[l][e]);
      body += "<rect x=\"" + num(x0 + double(e) * bar) + "\" y=\"" + num(y) + "\" width=\"" +
              num(bar - 2) + "\" height=\"" + num(chart_top + chart_h - y) + "\" fill=\"" +
              colours[e % 8] + "\"><title>layer " + std::to_string(l) + ", expert " +
              std::to_string(e) + ": " + num(100 * load[l][e], 1) + "%</title></rect>\n";
    }
    body += text(x0 + double(experts) * bar / 2, chart_top + chart_h + 18,
                 "MoE layer " + std::to_string(l), "text-anchor=\"middle\" font-size=\"12\"");
  }
  double uniform = y_of(1.0 / double(experts));
  body += "<line x1=\"" + num(left) + "\" x2=\"" + num(w - 20) + "\" y1=\"" + num(uniform) +
          "\" y2=\"" + num(uniform) + "\" stroke=\"black\" stroke-dasharray=\"5,4\"/>\n";
  body += text(left, chart_top + chart_h + 44,
               "bars: each expert's share of the routing choices; dashed: uniform (1/" +
                   std::to_string(experts) + ")",
               "font-size=\"12\"");
  return svg_document(w, h, body);
}

}  // namespace qkv::eval
