"""Prompt encoding: Gemma-2-2B through ComfyUI's native CLIP (type lumina2), or the embedded tiny encoder."""

from __future__ import annotations

import torch

from ..lumina_core.models.text import TextCondition, with_system_prompt
from ._comfy import io

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


def encode_with_embedded(encoder, prompt: str, input_name: str) -> TextCondition:
    """The embedded default's tiny encoder on one prompt, refusing words it doesn't know (named with ``input_name``)."""
    encoder.check_prompt(prompt, input_name)
    with torch.no_grad():
        condition = encoder.encode([prompt])
    return TextCondition(condition.features.float().cpu(), condition.mask.cpu())


class LuminaVideoTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoTextEncode",
            display_name="Lumina-Video Text Encode",
            category="Lumina-Video/conditioning",
            description=(
                "Encodes the prompt and the negative prompt as ComfyUI's CONDITIONING (caption features and their "
                "mask, as ComfyUI's Lumina 2 carries them), for the Lumina-Video Sampler or any native sampler. "
                "With a CLIP connected (Load CLIP, type lumina2, Gemma-2-2B) it adds Lumina-Video's system prompt and "
                "uses Gemma's second-to-last hidden states with their mask, as the released model was trained. "
                "Without one it uses the embedded model's tiny encoder, which knows only the toy world's words "
                "(colours red/green/blue/yellow/white, shapes circle/square/triangle, directions left/right/up/down)."
            ),
            inputs=[
                io.Model.Input(
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
                io.Conditioning.Output(display_name="positive", tooltip="The prompt's caption features."),
                io.Conditioning.Output(display_name="negative", tooltip="The negative prompt's caption features."),
            ],
        )

    @classmethod
    def execute(cls, model, positive: str, negative: str = "", clip=None) -> io.NodeOutput:
        from . import _comfy_model  # ComfyUI's model classes: imported when a node runs

        source = _comfy_model.require_lumina_video(model)
        if clip is not None:
            pos, neg = encode_with_clip(clip, positive), encode_with_clip(clip, negative)
        elif source.text_encoder is None:
            raise ValueError(
                f"the model {source.name!r} has no built-in text encoder: connect Gemma-2-2B to the clip input "
                "(Load CLIP, type lumina2, gemma_2_2b_fp16.safetensors)"
            )
        else:
            pos = encode_with_embedded(source.text_encoder, positive, "positive prompt")
            neg = encode_with_embedded(source.text_encoder, negative, "negative prompt")
        dim, wanted = pos.features.shape[-1], model.model.diffusion_model.cap_feat_dim
        if dim != wanted:
            hint = " Disconnect the clip input to use the embedded model's own encoder." if source.text_encoder else ""
            raise ValueError(
                f"the text encoder gives {dim}-wide caption features but the model {source.name!r} "
                f"reads {wanted}-wide ones.{hint}"
            )
        return io.NodeOutput(_comfy_model.conditioning(pos), _comfy_model.conditioning(neg))
