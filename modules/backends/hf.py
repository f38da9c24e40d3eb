"""Foundation models through Hugging Face transformers (kind ``transformers``).

The spec names a model id or local path and a task:

* ``zero-shot-object-detection`` (OWL-ViT, OWLv2, Grounding DINO): find/exists/count, with
  the object name as the text query and ``threshold`` on the scores.
* ``visual-question-answering`` (ViLT, BLIP): classifier models answer with their best
  label, generative ones with generated text; either is read into the function's type.
* ``image-text-to-text`` (Qwen2.5-VL, LLaVA, ...): chat messages with the image; any function.
* ``text-generation``: llm_query.

Models load in ``setup()`` (the registry caches the backend per process). FLOPs are an
estimate, 2 x parameters x tokens processed, unless the spec declares ``flops_per_call``.
"""

from __future__ import annotations

from typing import Any

from modules.backends import fm_text
from modules.backends.base import Backend, Call
from modules.catalog import TransformersSpec
from modules.errors import CatalogError


class TransformersBackend(Backend):
    kind = "transformers"
    spec: TransformersSpec

    def setup(self) -> None:
        if getattr(self, "_ready", False):
            return
        import torch  # noqa: F401  (fail here, clearly, if torch is missing)

        try:
            self._load()
        except (OSError, ValueError, KeyError) as exc:
            raise CatalogError(f"backend {self.name!r}: cannot load {self.spec.task} model "
                               f"{self.spec.model!r}: {exc}") from exc
        self._params = self.spec.n_params if self.spec.n_params is not None else \
            sum(p.numel() for p in self._model.parameters())
        self._tokens: dict[Call, int] = {}
        self._ready = True

    def _kwargs(self) -> dict[str, Any]:
        import torch

        dtype = "auto" if self.spec.dtype == "auto" else getattr(torch, self.spec.dtype)
        return {"dtype": dtype, "local_files_only": self.spec.local_files_only}

    def _load(self) -> None:
        import transformers as tf

        spec, kwargs = self.spec, self._kwargs()
        if spec.task == "zero-shot-object-detection":
            self._pipe = tf.pipeline(spec.task, model=spec.model, device=spec.device, dtype=kwargs["dtype"],
                                     local_files_only=spec.local_files_only)
            self._model = self._pipe.model
            return
        if spec.task == "text-generation":
            self._processor = tf.AutoTokenizer.from_pretrained(spec.model, local_files_only=spec.local_files_only)
            auto = tf.AutoModelForCausalLM
        else:
            self._processor = tf.AutoProcessor.from_pretrained(spec.model, local_files_only=spec.local_files_only)
            auto = tf.AutoModelForVisualQuestionAnswering if spec.task == "visual-question-answering" \
                else tf.AutoModelForImageTextToText
        self._model = auto.from_pretrained(spec.model, **kwargs).to(spec.device).eval()
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        if spec.task != "visual-question-answering":
            tokenizer.padding_side = "left"  # batched generation continues after the prompt

    def infer(self, calls: list[Call]) -> list[Any]:
        fm_text.forget_old(self._tokens)
        for call in calls:
            if call.function != "llm_query" and (call.image is None or 0 in call.image.shape[:2]):
                raise ValueError(f"backend {self.name!r}: {call.function}() got an empty image patch")
        task = self.spec.task
        if task == "zero-shot-object-detection":
            return [self._detect(c) for c in calls]
        if task == "visual-question-answering":
            return self._vqa(calls)
        if task == "image-text-to-text":
            return [fm_text.parse_answer(c, t) for c, t in zip(calls, self._chat(calls))]
        return [self._generate_text(c) for c in calls]

    def _detect(self, call: Call) -> Any:
        h, w = call.image.shape[:2]
        found = self._pipe(fm_text.to_pil(call.image), candidate_labels=[call.args[0]],
                           threshold=self.spec.threshold)
        boxes = [fm_text.clip_box((d["box"]["xmin"], d["box"]["ymin"], d["box"]["xmax"], d["box"]["ymax"]), w, h)
                 for d in found]
        boxes = [b for b in boxes if b is not None]
        self._tokens[call] = 1
        if call.function == "find":
            return boxes
        return bool(boxes) if call.function == "exists" else len(boxes)

    def _vqa(self, calls: list[Call]) -> list[Any]:
        import torch

        questions = [fm_text.short_question_for(c) for c in calls]
        enc = self._processor(images=[fm_text.to_pil(c.image) for c in calls], text=questions,
                              return_tensors="pt", padding=True).to(self.spec.device)
        with torch.no_grad():
            if self._model.can_generate():
                out = self._model.generate(**enc, max_new_tokens=self.spec.max_new_tokens, do_sample=False)
                texts = self._processor.batch_decode(out, skip_special_tokens=True)
            else:
                logits = self._model(**enc).logits
                texts = [self._model.config.id2label[int(i)] for i in logits.argmax(-1)]
        for call, mask in zip(calls, enc["attention_mask"]):
            self._tokens[call] = int(mask.sum())
        return [fm_text.parse_answer(c, t) for c, t in zip(calls, texts)]

    def _chat(self, calls: list[Call]) -> list[str]:
        import torch

        texts, images = [], []
        for call in calls:
            content: list[dict[str, Any]] = [{"type": "text", "text": fm_text.question_for(call)}]
            if call.function != "llm_query":
                content.insert(0, {"type": "image"})
                images.append(fm_text.to_pil(call.image))
            texts.append(self._processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False))
        enc = self._processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        enc = enc.to(self.spec.device)
        with torch.no_grad():
            out = self._model.generate(**enc, max_new_tokens=self.spec.max_new_tokens, do_sample=False)
        new = out[:, enc["input_ids"].shape[1]:]
        for call, mask, gen in zip(calls, enc["attention_mask"], new):
            self._tokens[call] = int(mask.sum()) + int(gen.shape[0])
        return self._processor.batch_decode(new, skip_special_tokens=True)

    def _generate_text(self, call: Call) -> str:
        import torch

        tok = self._processor
        prompt = call.args[0]
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        enc = tok(prompt, return_tensors="pt").to(self.spec.device)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self._model.generate(**enc, max_new_tokens=self.spec.max_new_tokens, do_sample=False,
                                       pad_token_id=pad)
        new = out[0, enc["input_ids"].shape[1]:]
        self._tokens[call] = int(enc["input_ids"].shape[1]) + int(new.shape[0])
        return tok.decode(new, skip_special_tokens=True).strip()

    def flops(self, call: Call) -> float:
        if self.spec.flops_per_call is not None:
            return self.spec.flops_per_call
        return 2.0 * self._params * self._tokens.get(call, 1)

    def params(self) -> int:
        return int(self._params)
