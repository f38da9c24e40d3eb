"""Tiny transformers models built from configs (random weights, no hub), saved to a folder.

Each is steered so that its answers are known exactly: the detector's box head predicts its
anchor grid (each image patch's own box); the VQA classifier's last layer always picks one
label; the language models' output layer is zero, so greedy decoding repeats token id 0,
which is the word the test chooses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _last_linear(module: nn.Module) -> nn.Linear:
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def _bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style BPE vocabulary in which each word merges into one token."""
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    for word in words:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        current = parts[0]
        for nxt in parts[1:]:
            if (current, nxt) not in merges:
                merges.append((current, nxt))
            current += nxt
            vocab.setdefault(current, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)  # OWL-ViT masks queries whose first id is 0
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def owlvit(path: Path) -> Path:
    """OWL-ViT, 32 px input, 8 px patches: 16 anchor boxes in a 4x4 grid."""
    from transformers import (
        CLIPTokenizer,
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
    )

    vocab, merges = _bpe(["a", "circle", "square", "triangle", "object"])
    n = len(vocab)
    config = OwlViTConfig(
        text_config={"vocab_size": n, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": n - 2,
                     "eos_token_id": n - 1, "pad_token_id": n - 1},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16)
    torch.manual_seed(0)
    model = OwlViTForObjectDetection(config).eval()
    with torch.no_grad():
        last = _last_linear(model.box_head)
        last.weight.zero_()
        last.bias.zero_()
    model.save_pretrained(path)
    size = {"height": 32, "width": 32}
    # transformers annotates merges as "a b" strings; its BPE model takes (a, b) pairs as well
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)  # type: ignore[arg-type]
    OwlViTProcessor(image_processor=OwlViTImageProcessor(size=size, crop_size=size),
                    tokenizer=tokenizer).save_pretrained(path)
    return path


VQA_LABELS = ["yes", "no", "0", "1", "2", "3", "red", "blue", "purple"]


def vilt(path: Path, answer: str) -> Path:
    """ViLT whose classifier always answers ``answer`` (one of VQA_LABELS)."""
    from transformers import (
        BertTokenizer,
        ViltConfig,
        ViltForQuestionAnswering,
        ViltImageProcessor,
        ViltProcessor,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "is", "there", "a", "the", "how", "many",
             "are", "circle", "circles", "red", "?"]
    config = ViltConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, image_size=32, patch_size=8, max_position_embeddings=40,
                        id2label=dict(enumerate(VQA_LABELS)), label2id={v: k for k, v in enumerate(VQA_LABELS)})
    torch.manual_seed(0)
    model = ViltForQuestionAnswering(config).eval()
    with torch.no_grad():
        last = _last_linear(model.classifier)
        last.weight.zero_()
        last.bias.zero_()
        last.bias[VQA_LABELS.index(answer)] = 5.0
    model.save_pretrained(path)
    # transformers types the processor's keywords as the generic ImagesKwargs; ViLT's size_divisor is read
    image_processor = ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=8)  # type: ignore[call-arg]
    ViltProcessor(image_processor=image_processor,
                  tokenizer=BertTokenizer(vocab={w: i for i, w in enumerate(words)})).save_pretrained(path)
    return path


def _word_tokenizer(words: list[str], **special: str | dict[str, str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>", **special)


def _zero_output(model: PreTrainedModel) -> None:
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()


def llava(path: Path, word: str) -> Path:
    """A LLaVA-style image-text-to-text model that answers ``word word word ...``."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    words = [word, "[UNK]", "<pad>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:"]
    tokenizer = _word_tokenizer(words, extra_special_tokens={"image_token": "<image>"})
    template = ("{% for m in messages %}{{ m['role'] | upper }}: {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %} "
                "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", chat_template=template,
        num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 28, "patch_size": 14,
                       "projection_dim": 16},
        text_config={"model_type": "llama", "vocab_size": len(words), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 128, "bos_token_id": 3, "eos_token_id": 4, "pad_token_id": 2},
        image_token_index=5, vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    _zero_output(model)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def gpt2(path: Path, word: str) -> Path:
    """A GPT-2 text generator that answers ``word word word ...``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    words = [word, "[UNK]", "<pad>", "<s>", "</s>", "what", "is", "the", "capital", "of", "france", "?"]
    config = GPT2Config(vocab_size=len(words), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=3, eos_token_id=4, pad_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    _zero_output(model)
    model.save_pretrained(path)
    _word_tokenizer(words).save_pretrained(path)
    return path
