"""Computing releases the GIL: Python threads run while a model translates."""
import sys
import threading

import qkv


def test_python_runs_while_translating(models, bible_pairs):
    translator = qkv.Translator(str(models / "translation"))
    sentences = [src for src, _ in bible_pairs] * 2
    started, state = threading.Event(), {"done": False}

    def translate():
        started.set()
        state["results"] = translator.translate_batch(sentences, beam_size=4)
        state["done"] = True

    # With a switch interval this long, a thread keeps the GIL until it lets go of it itself.
    # The main thread waits for the translating thread to start, so it gets the GIL back only
    # when the translation releases it, or when that thread has finished; it then counts while
    # holding it: a translation that kept the GIL would be done by then.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    try:
        worker = threading.Thread(target=translate)
        worker.start()
        started.wait()
        count = 0
        for _ in range(100000):
            count += 1
        translating_while_counting = not state["done"]
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert count == 100000 and translating_while_counting
    assert state["done"] and len(state["results"]) == len(sentences)


def test_threads_sharing_models_get_the_answers_of_one_at_a_time(models, bible_pairs):
    translators = [qkv.Translator(str(models / "translation")) for _ in range(2)]
    generator = qkv.Generator(str(models / "gpt"))
    sentences = [src for src, _ in bible_pairs[:20]]
    prompts = ["In the", "And"]

    def translate(i):
        return [r.hypotheses for r in translators[i % 2].translate_batch(sentences, beam_size=3)]

    def generate(i):
        return [r.sequences for r in generator.generate_batch(prompts, max_new_tokens=12, seed=3,
                                                              num_samples=3)]

    jobs = [translate] * 3 + [generate] * 2
    alone = [job(i) for i, job in enumerate(jobs)]
    together = [None] * len(jobs)

    def run(i):
        together[i] = [jobs[i](i) for _ in range(3)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == [[answer] * 3 for answer in alone]
