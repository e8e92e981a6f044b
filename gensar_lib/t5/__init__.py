"""The T5 stage: one T5 answers instruction prompts for search and recommendation by generating item
identifiers (paper section 3.3; ``docs/method.md`` sections 3-4; notebook 05_t5_training).

One module per job, read in this order:

* :mod:`~gensar_lib.t5.tokenizer` -- the tokenizer, with one token per behaviour and identifier token;
* :mod:`~gensar_lib.t5.model` -- a fresh or pretrained T5, the response loss, :class:`GenerativeModel`;
* :mod:`~gensar_lib.t5.batches` -- token ids, padded batches and each epoch's order;
* :mod:`~gensar_lib.t5.train` -- the training loop, top to bottom;
* :mod:`~gensar_lib.t5.checkpoints` -- ``best`` and the resumable ``last``;
* :mod:`~gensar_lib.t5.parallel` -- one data-parallel step under a launcher;
* :mod:`~gensar_lib.t5.stage` -- the cached stage: identifiers -> instructions -> tokenizer -> trained T5.

Departures from the paper, stated once here and again in notebook 05:

* The CPU profiles (``tiny``, ``small``) train a small T5 FROM SCRATCH (``small``: d_model 128, 2 encoder
  + 2 decoder layers, ~1.7M parameters) with a tokenizer trained on our own instruction corpus, instead of
  fine-tuning pretrained t5-small (61M parameters, ~7 examples/s on this CPU). The ``paper`` profile sets
  ``ModelConfig.pretrained = "t5-small"``; it needs the model in the local cache or a folder, because
  nothing here downloads.
* Far fewer epochs and a smaller batch than the paper (200 epochs; the official script uses 64 x 16
  accumulation x 8 GPUs); lr 1e-3, cosine schedule with 1% warm-up, weight decay 1e-7 and gradient
  clipping at 1.0 follow the official script.
* Sources longer than ``TrainConfig.max_source_length`` lose their OLDEST tokens (left truncation), so the
  current query and the question survive.

This file imports nothing, so that a module that needs one piece (evaluation needs
:class:`~gensar_lib.t5.model.GenerativeModel`) does not import the training loop.
"""
