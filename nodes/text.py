"""Prompt encoding: Gemma-2-2B through ComfyUI's native CLIP (type lumina2), or the embedded tiny encoder."""

from __future__ import annotations

import torch

from ..lumina_core.models.text import TextCondition, with_system_prompt
from ..lumina_core.pipeline import encode_prompts
from ._comfy import io
from .sockets import Conditioning, LuminaConditioning, LuminaModel

# The reference tokenizes with max_length=256 and truncation (system prompt included).
MAX_CAPTION_TOKENS = 256


def encode_with_clip(clip, prompt: str) -> TextCondition:
    """Gemma-2-2B's hidden_states[-2] for the system prompt + ``prompt``, with its attention mask.

    ComfyUI's lumina2 CLIP doesn't add Lumina-Video's system prompt, and parses
    ``(word:1.2)`` weights unless told not to; the text goes in verbatim.
    """
    text = with_system_prompt(prompt)
    try:
        tokens = clip.tokenize(text, disable_weights=True)
    except TypeError:  # a ComfyUI whose tokenizer has no disable_weights
        tokens = clip.tokenize(text)
    out = clip.encode_from_tokens(tokens, return_dict=True)
    features = out["cond"]
    if features.ndim != 3:
        raise ValueError(f"the CLIP returned features of shape {tuple(features.shape)}, expected [1, tokens, dim]")
    mask = out.get("attention_mask")
    if mask is None:
        mask = torch.ones(features.shape[:2], dtype=torch.long)
    features, mask = features[:, :MAX_CAPTION_TOKENS], mask[:, :MAX_CAPTION_TOKENS]
    return TextCondition(features.float().cpu(), mask.long().cpu())


class LuminaVideoTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoTextEncode",
            display_name="Lumina-Video Text Encode",
            category="Lumina-Video/conditioning",
            description=(
                "Encodes the prompt and the negative prompt. With a CLIP connected (Load CLIP, type lumina2, "
                "Gemma-2-2B) it adds Lumina-Video's system prompt and uses Gemma's second-to-last hidden states with "
                "their mask, as the released model was trained. Without one it uses the embedded model's tiny encoder, "
                "which knows only the toy world's words (colours red/green/blue/yellow/white, shapes "
                "circle/square/triangle, directions left/right/up/down)."
            ),
            inputs=[
                LuminaModel.Input(
                    "model",
                    tooltip="The video model; its caption width must match the text encoder's, "
                    "and the embedded default brings its own encoder.",
                ),
                io.String.Input(
                    "positive",
                    multiline=True,
                    default="a red circle moving right",
                    tooltip="What the video shows. Written as is: (word:1.2) weights are not parsed. "
                    "The embedded default reads at most 15 words.",
                ),
                io.String.Input(
                    "negative",
                    multiline=True,
                    default="",
                    tooltip="What to steer away from (the unconditional pass of CFG). "
                    "Empty is the reference's default.",
                ),
                io.Clip.Input(
                    "clip",
                    optional=True,
                    tooltip="Gemma-2-2B from Load CLIP with type 'lumina2' (gemma_2_2b_fp16.safetensors), needed for "
                    "the released weights. Leave unconnected for the embedded default.",
                ),
            ],
            outputs=[
                LuminaConditioning.Output(
                    display_name="conditioning",
                    tooltip="Caption features of both prompts, for the Lumina-Video Sampler.",
                )
            ],
        )

    @classmethod
    def execute(cls, model, positive: str, negative: str = "", clip=None) -> io.NodeOutput:
        if clip is not None:
            pos, neg = encode_with_clip(clip, positive), encode_with_clip(clip, negative)
            encoder = "clip"
        else:
            if model.text_encoder is None:
                raise ValueError(
                    f"the model {model.name!r} has no built-in text encoder: connect Gemma-2-2B to the clip input "
                    "(Load CLIP, type lumina2, gemma_2_2b_fp16.safetensors)"
                )
            model.text_encoder.check_prompt(positive, "positive prompt")
            model.text_encoder.check_prompt(negative, "negative prompt")
            pos, neg = encode_prompts(model, [positive]), encode_prompts(model, [negative])
            pos, neg = (TextCondition(c.features.float().cpu(), c.mask.cpu()) for c in (pos, neg))
            encoder = "embedded"
        dim = pos.features.shape[-1]
        if dim != model.caption_dim:
            hint = (
                " Disconnect the clip input to use the embedded model's own encoder."
                if model.text_encoder is not None
                else ""
            )
            raise ValueError(
                f"the text encoder gives {dim}-wide caption features but the model {model.name!r} "
                f"reads {model.caption_dim}-wide ones.{hint}"
            )
        return io.NodeOutput(Conditioning(pos, neg, positive, negative, encoder))
