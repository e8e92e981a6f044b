"""Tokenizer, T5 build/load and the resumable training loop (gensar_lib.t5)."""
import json
import os
import time

import numpy as np
import pytest
import torch

from gensar_lib.config import ConfigError, ModelConfig, TrainConfig
from gensar_lib.t5.batches import LABEL_IGNORE, collate, encode_pairs
from gensar_lib.t5.checkpoints import load_best
from gensar_lib.t5.model import build_model
from gensar_lib.t5.tokenizer import load_pretrained_tokenizer, train_tokenizer
from gensar_lib.t5.train import TIMING_KEYS, train
from gensar_lib.tasks import BEHAVIOUR_TOKENS

IDENTIFIERS = (
    [f"<shared_{lv}_{i}>" for lv in "ab" for i in range(12)]
    + [f"<semantic_{lv}_{i}>" for lv in "ab" for i in range(6)]
    + [f"<collab_{lv}_{i}>" for lv in "ab" for i in range(6)]
    + ["<dedup_0>", "<dedup_1>"]
)
WORDS = ["red pen", "blue stapler", "desk lamp", "paper clips", "black ink", "office chair",
         "sticky notes", "file folder", "glue stick", "white board"]
TINY = ModelConfig(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, dropout_rate=0.0)


def rec_id(i: int) -> str:
    return f"<rec_item><shared_a_{i}><shared_b_{(3 * i) % 12}><collab_a_{i % 6}><collab_b_{(i + 1) % 6}>"


def src_id(i: int) -> str:
    return f"<src_item><shared_a_{i}><shared_b_{(5 * i) % 12}><semantic_a_{i % 6}><semantic_b_{(i + 2) % 6}>"


def prompt(i: int) -> str:
    return (f"The user bought {rec_id(i)}; searched '{WORDS[i]}' and clicked {src_id(i)}. "
            "What will they buy next?")


PAIRS = [(prompt(i), rec_id(i + 1)) for i in range(10)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices on a shared 2-core machine: one thread avoids spin-waiting (10-100x faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    texts = [t for pair in PAIRS for t in pair] + WORDS * 3
    return train_tokenizer(texts, vocab_size=120, special_tokens=IDENTIFIERS)


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, lr=1e-2, warmup_ratio=0.1)
    return TrainConfig(**{**base, **kw})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in history]


# --------------------------------------------------------------------------- tokenizer


def test_identifier_and_behaviour_tokens_are_single_tokens_and_round_trip(tokenizer, tmp_path):
    assert [tokenizer.convert_ids_to_tokens(i) for i in (0, 1, 2)] == ["<pad>", "</s>", "<unk>"]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    tokens = list(BEHAVIOUR_TOKENS) + IDENTIFIERS
    for token in tokens:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    glued = tokenizer("".join(tokens), add_special_tokens=False)["input_ids"]
    spaced = tokenizer(" ".join(tokens), add_special_tokens=False)["input_ids"]
    assert len(glued) == len(tokens) and spaced == glued
    assert tokenizer.convert_ids_to_tokens(glued) == tokens
    ident = rec_id(3)
    ids = tokenizer(ident)["input_ids"]
    assert ids[-1] == 1 and len(ids) == 6  # 5 tokens + </s>
    assert tokenizer.decode(ids, skip_special_tokens=True) == ident
    # inline in text, the identifier still becomes exactly its five tokens
    text_ids = tokenizer(f"bought {ident}; searched", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(text_ids).count("<rec_item>") == 1
    assert all(i in text_ids for i in ids[:-1])

    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    for text in [PAIRS[0][0], PAIRS[0][1], "".join(tokens)]:
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(reloaded) == len(tokenizer)


def test_words_are_not_unknown_and_specials_are_outside_the_unigram_vocabulary(tokenizer):
    ids = tokenizer("searched 'red pen' and clicked. What?")["input_ids"]
    assert 2 not in ids  # no <unk>: punctuation is in the initial alphabet
    vocab = tokenizer.get_vocab()
    assert not any("shared" in piece and piece not in IDENTIFIERS for piece in vocab)


# --------------------------------------------------------------------------- data


def test_loss_is_on_the_response_only(tokenizer):
    short = encode_pairs(tokenizer, [("hi", PAIRS[0][1])])
    long = encode_pairs(tokenizer, [(PAIRS[0][0] * 3, PAIRS[0][1])])
    assert len(long.sources[0]) > len(short.sources[0]) + 20
    target_ids = tokenizer(PAIRS[0][1])["input_ids"]
    for enc in (short, long):
        batch = collate(enc.sources + [[5, 1]], enc.targets + [[1]])
        labels = batch["labels"][0]
        assert labels.tolist() == target_ids  # exactly the target ids, nothing of the source
        assert int((labels != LABEL_IGNORE).sum()) == 6
        assert batch["labels"][1].tolist() == [1] + [LABEL_IGNORE] * 5  # padding is ignored
        assert batch["attention_mask"][1].tolist()[:3] == [1, 1, 0]
    # sources are left-truncated: the question at the end survives, </s> stays last
    cut = encode_pairs(tokenizer, [(PAIRS[0][0], "x")], max_source_length=10).sources[0]
    assert len(cut) == 10 and cut == tokenizer(PAIRS[0][0])["input_ids"][-10:]


# --------------------------------------------------------------------------- training


def greedy(model, tokenizer, sources: list[str]) -> list[str]:
    enc = tokenizer(sources, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=7, num_beams=1, do_sample=False)
    return [tokenizer.decode(o, skip_special_tokens=True) for o in out]


@pytest.mark.slow
def test_training_memorises_ten_prompts(tokenizer, tmp_path):
    model = build_model(TINY, tokenizer, seed=0)
    assert greedy(model, tokenizer, [s for s, _ in PAIRS]) != [t for _, t in PAIRS]
    result = train(model, tokenizer, PAIRS, tiny_cfg(epochs=80, batch_size=5, lr=1e-2, warmup_ratio=0.05),
                   tmp_path, progress=False)
    losses = [e["train_loss"] for e in result.history]
    assert losses[-1] < 0.02 * losses[0]
    assert greedy(model, tokenizer, [s for s, _ in PAIRS]) == [t for _, t in PAIRS]
    assert result.finished and result.steps == 80 * 2 and len(result.step_losses) == 160
    assert all(e["samples_per_s"] > 0 for e in result.history)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights_and_history(tokenizer, tmp_path):
    cfg = tiny_cfg(epochs=3)
    dropout = ModelConfig(**{**TINY.__dict__, "dropout_rate": 0.2})  # RNG state must be restored too
    scores = {1: 0.3, 2: 0.1, 3: 0.4}

    def make_validate(crash_after: int | None):
        calls = []

        def validate(model) -> float:
            calls.append(1)
            if len(calls) == crash_after:
                raise KeyboardInterrupt("simulated interruption during validation")
            return scores[len(calls)]
        return validate

    full_model = build_model(dropout, tokenizer, seed=1)
    full = train(full_model, tokenizer, PAIRS, cfg, tmp_path / "full", make_validate(None), seed=7,
                 progress=False)

    model = build_model(dropout, tokenizer, seed=1)
    with pytest.raises(KeyboardInterrupt):  # epoch 1 checkpointed, epoch 2 dies in validation
        train(model, tokenizer, PAIRS, cfg, tmp_path / "cut", make_validate(2), seed=7, progress=False)
    saved = json.loads((tmp_path / "cut" / "last" / "trainer_state.json").read_text())
    assert (saved["round"], saved["step"]) == (1, 3)
    fresh = build_model(dropout, tokenizer, seed=1)  # a new process: new model object
    validate = make_validate(None)
    validate(None)  # the resumed run's first validation is epoch 2's
    resumed = train(fresh, tokenizer, PAIRS, cfg, tmp_path / "cut", validate, seed=7, progress=False)
    assert resumed.resumed_from_step == 3 and resumed.finished
    assert same_weights(weights(fresh), weights(full_model))
    assert untimed(resumed.history) == untimed(full.history)
    assert resumed.step_losses == full.step_losses
    assert (resumed.best_epoch, resumed.best_score) == (full.best_epoch, full.best_score) == (3, 0.4)

    # a finished run resumed again does nothing; a run on other data refuses the checkpoint
    again = train(fresh, tokenizer, PAIRS, cfg, tmp_path / "cut", validate, seed=7, progress=False)
    assert again.steps == full.steps and same_weights(weights(fresh), weights(full_model))
    with pytest.raises(ConfigError, match="pairs"):
        train(fresh, tokenizer, PAIRS[:5], cfg, tmp_path / "cut", None, seed=7, progress=False)


@pytest.mark.slow
def test_mid_epoch_checkpoint_resumes_to_the_same_weights(tokenizer, tmp_path):
    cfg = tiny_cfg(epochs=2, batch_size=3, checkpoint_every=2)  # 4 steps per epoch
    dropout = ModelConfig(**{**TINY.__dict__, "dropout_rate": 0.2})
    full_model = build_model(dropout, tokenizer, seed=2)
    full = train(full_model, tokenizer, PAIRS, cfg, tmp_path / "full", seed=3, progress=False)

    model = build_model(dropout, tokenizer, seed=2)
    calls = []

    def crash_on_seventh_forward(module, args, output):
        calls.append(1)
        if len(calls) == 7:  # step 7 of 8: checkpoint written after step 6, mid epoch 2
            raise KeyboardInterrupt("simulated interruption")

    hook = model.register_forward_hook(crash_on_seventh_forward)
    with pytest.raises(KeyboardInterrupt):
        train(model, tokenizer, PAIRS, cfg, tmp_path / "cut", seed=3, progress=False)
    hook.remove()
    fresh = build_model(dropout, tokenizer, seed=2)
    resumed = train(fresh, tokenizer, PAIRS, cfg, tmp_path / "cut", seed=3, progress=False)
    assert resumed.resumed_from_step == 6
    assert same_weights(weights(fresh), weights(full_model))
    assert untimed(resumed.history) == untimed(full.history)


@pytest.mark.slow
def test_same_seed_same_weights_and_best_checkpoint_has_the_highest_score(tokenizer, tmp_path):
    cfg = tiny_cfg(epochs=3)
    snapshots, scores = {}, [0.2, 0.9, 0.5]

    def validate(model) -> float:
        snapshots[len(snapshots) + 1] = weights(model)
        return scores[len(snapshots) - 1]

    a = build_model(TINY, tokenizer, seed=0)
    result = train(a, tokenizer, PAIRS, cfg, tmp_path / "a", validate, seed=5, progress=False)
    b = build_model(TINY, tokenizer, seed=0)
    train(b, tokenizer, PAIRS, cfg, tmp_path / "b", seed=5, progress=False)
    c = build_model(TINY, tokenizer, seed=0)
    train(c, tokenizer, PAIRS, cfg, tmp_path / "c", seed=6, progress=False)
    assert same_weights(weights(a), weights(b))
    assert not same_weights(weights(a), weights(c))  # another seed shuffles differently

    assert (result.best_epoch, result.best_score) == (2, 0.9)
    assert [e["best"] for e in result.history] == [True, True, False]
    best, best_tok = load_best(tmp_path / "a")
    best_w = weights(best)
    assert all(torch.equal(best_w[k], snapshots[2][k]) for k in best_w)
    assert not all(torch.equal(best_w[k], snapshots[3][k]) for k in best_w)
    assert best_tok(PAIRS[0][0])["input_ids"] == tokenizer(PAIRS[0][0])["input_ids"]
    assert json.loads((tmp_path / "a" / "best" / "trainer_state.json").read_text())["epoch"] == 2


# --------------------------------------------------------------------------- models


def test_fresh_model_follows_the_config_and_the_tokenizer(tokenizer):
    model = build_model(TINY, tokenizer, seed=0)
    c = model.config
    assert (c.vocab_size, c.d_model, c.num_layers, c.num_decoder_layers) == (len(tokenizer), 32, 1, 1)
    assert (c.pad_token_id, c.eos_token_id, c.decoder_start_token_id) == (0, 1, 0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = build_model(TINY, tokenizer, seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    assert same_weights(weights(model), weights(again))
    assert not same_weights(weights(model), weights(build_model(TINY, tokenizer, seed=1)))


def test_missing_pretrained_model_fails_fast_naming_it(tokenizer):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="t5-small") as err:
        build_model(ModelConfig(pretrained="t5-small"), tokenizer)
    assert "offline" in str(err.value) and "pretrained=None" in str(err.value)
    with pytest.raises(ConfigError, match="t5-small"):
        load_pretrained_tokenizer("t5-small", IDENTIFIERS)
    assert time.perf_counter() - start < 20


def test_pretrained_model_and_tokenizer_load_from_a_local_folder(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    base = train_tokenizer([s for s, _ in PAIRS], vocab_size=120, special_tokens=[])
    base_model = build_model(TINY, base, seed=4)
    base_model.save_pretrained(tmp_path)
    base.save_pretrained(tmp_path)

    loaded_tok = load_pretrained_tokenizer(str(tmp_path), IDENTIFIERS)
    assert len(loaded_tok) == len(base) + len(IDENTIFIERS)
    assert len(loaded_tok(rec_id(2), add_special_tokens=False)["input_ids"]) == 5
    assert len(AutoTokenizer.from_pretrained(tmp_path)) == len(base)  # the folder is not modified

    model = build_model(ModelConfig(pretrained=str(tmp_path), dropout_rate=0.0), loaded_tok)
    emb = model.get_input_embeddings().weight
    old = base_model.get_input_embeddings().weight
    assert emb.shape[0] == len(loaded_tok)
    assert torch.equal(emb[: old.shape[0]], old)  # pretrained rows kept, new rows appended
    enc = loaded_tok([PAIRS[0][0]], return_tensors="pt")
    labels = loaded_tok([rec_id(1)], return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(**enc, labels=labels).loss)


TOKENIZER_SCRIPT = """
import sys
from tests.test_generative import IDENTIFIERS, PAIRS, WORDS
from gensar_lib.t5.tokenizer import train_tokenizer
texts = [t for pair in PAIRS for t in pair] + WORDS * 3 + [f"item {i} costs {i * 7} dollars" for i in range(200)]
tok = train_tokenizer(texts, vocab_size=150, special_tokens=IDENTIFIERS)
sys.stdout.write(tok.backend_tokenizer.to_str())
"""


def test_tokenizer_is_byte_identical_across_processes():
    """tokenizers' Unigram trainer orders and scores pieces differently per process; ours must not."""
    import subprocess
    import sys

    from gensar_lib.config import REPO_ROOT

    runs = [subprocess.run([sys.executable, "-c", TOKENIZER_SCRIPT], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True).stdout for _ in range(3)]
    assert runs[0] and runs[0] == runs[1] == runs[2]
    vocab = json.loads(runs[0])["model"]["vocab"]
    assert [p for p, _ in vocab[:3]] == ["<pad>", "</s>", "<unk>"]
    assert [p for p, _ in vocab[3:]] == sorted(p for p, _ in vocab[3:])  # canonical order


# --------------------------------------------------------------------------- batches and budgets


def test_every_epoch_draws_every_instruction_and_a_seed_fixes_the_batches():
    from gensar_lib.t5.batches import epoch_batches

    lengths = [int(x) for x in torch.randint(3, 90, (1000,), generator=torch.Generator().manual_seed(0))]
    for window in (0, 4):
        seen = set()
        for epoch in range(3):
            batches = epoch_batches(lengths, 32, seed=5, epoch=epoch, window=window)
            rows = np.concatenate(batches)
            assert sorted(rows.tolist()) == list(range(1000))  # every instruction exactly once per epoch
            assert len(batches) == 32 and all(len(b) == 32 for b in batches[:-1] if len(b) != 8)
            again = epoch_batches(lengths, 32, seed=5, epoch=epoch, window=window)
            assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # same seed, same batches
            seen.update(tuple(sorted(b.tolist())) for b in batches)
        other = epoch_batches(lengths, 32, seed=6, epoch=0, window=window)
        assert not all(np.array_equal(a, b) for a, b in zip(other, epoch_batches(lengths, 32, 5, 0, window)))
        assert len(seen) > 64  # epochs are reshuffled, not the same batches again


def test_length_windows_cut_padding():
    from gensar_lib.t5.batches import epoch_batches

    lengths = np.array([int(x) for x in torch.randint(3, 120, (2000,), generator=torch.Generator().manual_seed(1))])

    def padded(window: int) -> int:
        return sum(len(b) * int(lengths[b].max()) for b in epoch_batches(lengths, 64, 0, 0, window))

    assert padded(50) < 0.6 * padded(0)
    assert padded(50) >= lengths.sum()


@pytest.mark.slow
def test_step_budget_with_validation_rounds(tokenizer, tmp_path):
    cfg = tiny_cfg(epochs=99, batch_size=3, max_steps=10, eval_every=4)  # 4 steps per epoch
    calls = []
    result = train(build_model(TINY, tokenizer, seed=0), tokenizer, PAIRS, cfg, tmp_path,
                   lambda m: calls.append(1) or float(len(calls)), progress=False)
    assert result.steps == 10 and result.finished and len(result.step_losses) == 10
    assert [e["step"] for e in result.history] == [4, 8, 10]  # every 4 steps and at the end
    assert [e["epoch"] for e in result.history] == [1.0, 2.0, 2.5]
    examples = [e["examples"] for e in result.history]  # 10 pairs: batches of 3, 3, 3, 1 per epoch
    assert examples[:2] == [10, 20] and 22 <= examples[2] <= 26
    assert result.best_step == 10 and result.best_epoch == 2.5
    times = [e["train_seconds"] for e in result.history]
    assert times == sorted(times) and times[0] > 0


@pytest.mark.slow
def test_resume_refuses_another_tokenizer_and_says_it_resumes(tokenizer, tmp_path, capsys):
    cfg = tiny_cfg(epochs=3)
    model = build_model(TINY, tokenizer, seed=0)
    train(model, tokenizer, PAIRS, cfg, tmp_path, progress=False, stop_after_steps=4)
    train(build_model(TINY, tokenizer, seed=0), tokenizer, PAIRS, cfg, tmp_path, progress=True)
    printed = capsys.readouterr()
    assert f"resuming {tmp_path} from step 4/9 (epoch 2, batch 2" in printed.out + printed.err
    other = train_tokenizer([t for pair in PAIRS for t in pair] + WORDS, vocab_size=110, special_tokens=IDENTIFIERS)
    train(build_model(TINY, tokenizer, seed=0), tokenizer, PAIRS, tiny_cfg(epochs=4), tmp_path / "b",
          progress=False, stop_after_steps=2)
    with pytest.raises(ConfigError, match="tokenizer"):
        train(build_model(TINY, other, seed=0), other, PAIRS, tiny_cfg(epochs=4), tmp_path / "b", progress=False)


def test_response_loss_is_the_models_own_loss(tokenizer):
    from gensar_lib.t5.model import response_loss

    model = build_model(TINY, tokenizer, seed=0).eval()
    enc = encode_pairs(tokenizer, PAIRS)
    batch = collate(enc.sources, enc.targets)
    with torch.no_grad():
        assert torch.allclose(response_loss(model, batch), model(**batch).loss, atol=1e-6)
        assert response_loss(model, batch, 0.1) > response_loss(model, batch)


def test_position_nll_splits_the_response_loss_by_position(tokenizer):
    from gensar_lib.t5.model import position_nll

    model = build_model(TINY, tokenizer, seed=0).eval()
    enc = encode_pairs(tokenizer, PAIRS)
    batch = collate(enc.sources, enc.targets)
    per_position = position_nll(model, batch)
    labels = batch["labels"]
    assert len(per_position) == labels.shape[1]
    counts = (labels != -100).sum(0).tolist()
    weighted = sum(n * c for n, c in zip(per_position, counts)) / sum(counts)
    assert weighted == pytest.approx(float(model(**batch).loss.detach()), rel=1e-5)
    # position 2 by hand: the log-probability of each row's label at that position
    with torch.no_grad():
        logp = torch.log_softmax(model(**batch).logits[:, 2], -1)
    rows = labels[:, 2] != -100
    assert per_position[2] == pytest.approx(float(-logp[rows, labels[rows, 2]].mean()), rel=1e-5)


KILL_SCRIPT = """
import hashlib, json, os, signal, sys
import torch
torch.set_num_threads(1)
import gensar_lib.t5.train as T
from gensar_lib.t5.batches import collate, encode_pairs
from gensar_lib.t5.model import build_model
from gensar_lib.t5.tokenizer import train_tokenizer
from tests.test_generative import PAIRS, TINY, tiny_cfg, IDENTIFIERS, WORDS
out, kill_at = sys.argv[1], int(sys.argv[2])
tokenizer = train_tokenizer([t for p in PAIRS for t in p] + WORDS * 3, vocab_size=120, special_tokens=IDENTIFIERS)
step = T._train_step
def maybe_die(*args, **kw):
    maybe_die.calls += 1
    if maybe_die.calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(*args, **kw)
maybe_die.calls = 0
T._train_step = maybe_die
model = build_model(TINY.__class__(**{**TINY.__dict__, "dropout_rate": 0.2}), tokenizer, seed=1)
batch = collate(*encode_pairs(tokenizer, PAIRS).__dict__.values())
def validate(m):
    return -float(m(**batch).loss)
result = T.train(model, tokenizer, PAIRS, tiny_cfg(epochs=3, batch_size=3, checkpoint_every=2), out, validate,
                 seed=3, progress=True)
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
history = [{k: v for k, v in e.items() if k not in T.TIMING_KEYS} for e in result.history]
print(json.dumps({"weights": digest, "history": history, "best": result.best_score,
                  "resumed_from": result.resumed_from_step}))
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_equals_the_uninterrupted_run(tmp_path):
    import subprocess
    import sys

    from gensar_lib.config import REPO_ROOT

    def run(folder, kill_at: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / folder), str(kill_at)],
                              cwd=REPO_ROOT, capture_output=True, text=True)

    full = run("full", 0)
    assert full.returncode == 0, full.stderr
    killed = run("cut", 7)  # 4 steps per epoch, checkpoint every 2: dies in epoch 2 after the step-6 checkpoint
    assert killed.returncode == -9
    resumed = run("cut", 0)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout + resumed.stderr and "from step 6/12" in resumed.stdout + resumed.stderr
    a, b = json.loads(full.stdout.splitlines()[-1]), json.loads(resumed.stdout.splitlines()[-1])
    assert b.pop("resumed_from") == 6 and a.pop("resumed_from") is None
    assert a == b  # same final weights, history and validation scores


# --------------------------------------------------------------------------- damaged, planted or unwritable checkpoints


class _Payload:
    """Unpickling it creates the file ``path``: the proof that a loader ran code from data."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("forged", [False, True], ids=["manifest-kept", "manifest-forged"])
def test_a_payload_in_the_training_state_runs_nothing_and_training_starts_over(tokenizer, tmp_path, forged):
    from gensar_lib.artifacts import MANIFEST, CacheWarning, write_manifest

    cfg = tiny_cfg(epochs=2)
    full_model = build_model(TINY, tokenizer, seed=1)
    full = train(full_model, tokenizer, PAIRS, cfg, tmp_path / "full", seed=7, progress=False)
    cut = tmp_path / "cut"
    train(build_model(TINY, tokenizer, seed=1), tokenizer, PAIRS, cfg, cut, seed=7, progress=False,
          stop_after_steps=3)
    torch.save({"signature": _Payload(tmp_path / "ran")}, cut / "last" / "training_state.pt")
    if forged:  # the manifest rewritten to match: weights_only=True itself must refuse the object
        write_manifest(cut / "last")
    assert json.loads((cut / "last" / MANIFEST).read_text())["files"]
    fresh = build_model(TINY, tokenizer, seed=1)
    with pytest.warns(CacheWarning, match="training_state.pt.*training starts over"):
        again = train(fresh, tokenizer, PAIRS, cfg, cut, seed=7, progress=False)
    assert not (tmp_path / "ran").exists()
    assert again.resumed_from_step is None and same_weights(weights(fresh), weights(full_model))
    assert untimed(again.history) == untimed(full.history)


def _full_folder(path, limit: int):
    """A folder where writing more than about ``limit`` bytes fails with an OS error: a tmpfs of that size when
    this machine lets us mount one, else (no permission) a file-size limit on this process."""
    import contextlib
    import resource
    import signal
    import subprocess

    @contextlib.contextmanager
    def folder():
        path.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={limit}", "tmpfs", str(path)],
                                 capture_output=True).returncode == 0
        if mounted:
            try:
                yield path
            finally:
                subprocess.run(["umount", str(path)], check=True)
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            yield path
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, handler)
    return folder()


@pytest.mark.parametrize("limit, folder", [(64 * 1024, "best"), (300 * 1024, "last")])  # best: 132 kB, last: 370 kB
def test_disk_full_while_a_checkpoint_is_written_names_the_folder(tokenizer, tmp_path, limit, folder):
    import errno

    from gensar_lib.__main__ import _os_message

    model = build_model(TINY, tokenizer, seed=0)
    out = tmp_path / "small"
    with _full_folder(out, limit), pytest.raises(OSError) as raised:
        train(model, tokenizer, PAIRS, tiny_cfg(epochs=1), out, progress=False)
    err = raised.value
    assert err.errno in (errno.ENOSPC, errno.EFBIG), err
    assert err.filename == str(out / folder)
    assert _os_message(err) == f"{err.filename}: {os.strerror(err.errno)}"
