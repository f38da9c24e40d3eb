"""Foundation models through Hugging Face transformers (kind ``transformers``).

The spec names a model id or local path and a task:

* ``zero-shot-object-detection`` (OWL-ViT, OWLv2, Grounding DINO): find/exists/count, with
  the object name as the text query and ``threshold`` on the scores.
* ``visual-question-answering`` (ViLT, BLIP): classifier models answer with their best
  label, generative ones with generated text; either is read into the function's type.
* ``image-text-to-text`` (Qwen2.5-VL, LLaVA, ...): chat messages with the image; any function.
* ``text-generation``: llm_query.

Models load in ``setup()`` (the registry caches the backend per process). FLOPs are an
estimate, 2 x parameters x tokens processed, unless the spec declares ``flops_per_call``;
before a call runs (``flops(call)``) one token is assumed.

A reply that cannot be read is that call's ``CallFailure`` (with its usage) when the call was
answered alone; in a batch of several it rejects the batch, so the runtime answers each call
alone (a batch's padding is part of what its calls generate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modules.backends import fm_text
from modules.backends.base import Backend, Call, CallFailure, Output, Usage, pixels
from modules.catalog import TransformersSpec
from modules.errors import CatalogError

if TYPE_CHECKING:
    from transformers.models.auto.auto_factory import _BaseAutoModelClass


class TransformersBackend(Backend):
    kind = "transformers"
    spec: TransformersSpec
    #: Loaded by ``setup()``. Their transformers classes depend on the task and the checkpoint
    #: (a tokenizer or a multimodal processor; a detector, a VQA classifier or a generator), and
    #: each is used through its own class's methods, so they are typed dynamically.
    _processor: Any
    _model: Any

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
            self._processor = tf.AutoTokenizer.from_pretrained(
                spec.model, local_files_only=spec.local_files_only)
            auto: type[_BaseAutoModelClass] = tf.AutoModelForCausalLM
        else:
            # transformers leaves AutoProcessor.from_pretrained unannotated
            self._processor = tf.AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
                spec.model, local_files_only=spec.local_files_only)
            auto = tf.AutoModelForVisualQuestionAnswering if spec.task == "visual-question-answering" \
                else tf.AutoModelForImageTextToText
        self._model = auto.from_pretrained(spec.model, **kwargs).to(spec.device).eval()
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        if spec.task != "visual-question-answering":
            tokenizer.padding_side = "left"  # batched generation continues after the prompt

    def infer(self, calls: list[Call]) -> list[Output]:
        for call in calls:
            if call.function != "llm_query" and (call.image is None or 0 in call.image.shape[:2]):
                raise ValueError(f"backend {self.name!r}: {call.function}() got an empty image patch")
        task = self.spec.task
        if task == "zero-shot-object-detection":
            one = self.declared_usage(self._flops_at(1), self.params())  # detectors count no tokens
            return [Output(self._detect(c), one) for c in calls]
        if task == "text-generation":
            return [self._generate_text(c) for c in calls]
        if task == "visual-question-answering":
            replies = self._vqa(calls)
        else:
            replies = self._chat(calls)
        outputs = [self._read(c, text, tokens, confidence)
                   for c, (text, tokens, confidence) in zip(calls, replies, strict=True)]
        failed = [o.value for o in outputs if isinstance(o.value, CallFailure)]
        if failed and len(calls) > 1:
            raise ValueError(failed[0].message)
        return outputs

    def _usage(self, tokens: int, confidence: float | None = None) -> Usage:
        return self.declared_usage(self._flops_at(tokens), self.params(), tokens, confidence)

    def _read(self, call: Call, text: str, tokens: int, confidence: float | None) -> Output:
        """The reply read into the function's type; an unreadable one is the call's failure."""
        try:
            value = fm_text.parse_answer(call, text)
        except ValueError as exc:
            return Output(CallFailure(str(exc)), self._usage(tokens))
        return Output(value, self._usage(tokens, confidence))

    def _detect(self, call: Call) -> Any:
        image = pixels(call)
        h, w = image.shape[:2]
        found = self._pipe(fm_text.to_pil(image), candidate_labels=[call.args[0]],
                           threshold=self.spec.threshold)
        boxes = [fm_text.clip_box((d["box"]["xmin"], d["box"]["ymin"], d["box"]["xmax"], d["box"]["ymax"]),
                                  w, h)
                 for d in found]
        boxes = [b for b in boxes if b is not None]
        if call.function == "find":
            return boxes
        return bool(boxes) if call.function == "exists" else len(boxes)

    def _vqa(self, calls: list[Call]) -> list[tuple[str, int, float | None]]:
        """Per call: (reply, tokens, the label's softmax probability for classifier models)."""
        import torch

        questions = [fm_text.short_question_for(c) for c in calls]
        enc = self._processor(images=[fm_text.to_pil(pixels(c)) for c in calls], text=questions,
                              return_tensors="pt", padding=True).to(self.spec.device)
        with torch.no_grad():
            if self._model.can_generate():
                out = self._model.generate(**enc, max_new_tokens=self.spec.max_new_tokens, do_sample=False)
                texts = self._processor.batch_decode(out, skip_special_tokens=True)
                confidences: list[float | None] = [None] * len(calls)
            else:
                logits = self._model(**enc).logits
                best = logits.argmax(-1)
                texts = [self._model.config.id2label[int(i)] for i in best]
                confidences = logits.softmax(-1).gather(-1, best[:, None])[:, 0].tolist()
        tokens = [int(mask.sum()) for mask in enc["attention_mask"]]
        return list(zip(texts, tokens, confidences, strict=True))

    def _chat(self, calls: list[Call]) -> list[tuple[str, int, float | None]]:
        import torch

        texts, images = [], []
        for call in calls:
            content: list[dict[str, Any]] = [{"type": "text", "text": fm_text.question_for(call)}]
            if call.function != "llm_query":
                content.insert(0, {"type": "image"})
                images.append(fm_text.to_pil(pixels(call)))
            texts.append(self._processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False))
        enc = self._processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        enc = enc.to(self.spec.device)
        with torch.no_grad():
            out = self._model.generate(**enc, max_new_tokens=self.spec.max_new_tokens, do_sample=False)
        new = out[:, enc["input_ids"].shape[1]:]
        tokens = [int(mask.sum()) + int(gen.shape[0])
                  for mask, gen in zip(enc["attention_mask"], new, strict=True)]
        replies: list[str] = self._processor.batch_decode(new, skip_special_tokens=True)
        return [(text, n, None) for text, n in zip(replies, tokens, strict=True)]

    def _generate_text(self, call: Call) -> Output:
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
        tokens = int(enc["input_ids"].shape[1]) + int(new.shape[0])
        return Output(tok.decode(new, skip_special_tokens=True).strip(), self._usage(tokens))

    def _flops_at(self, tokens: int) -> float:
        if self.spec.flops_per_call is not None:
            return self.spec.flops_per_call
        return 2.0 * self._params * tokens

    def flops(self, call: Call) -> float:
        """Before the call runs: the declared FLOPs, else 2 x parameters x one token."""
        return self._flops_at(1)

    def params(self) -> int:
        return int(self._params)
