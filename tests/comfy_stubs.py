"""Stand-ins for the parts of ComfyUI the pack imports, so the node tier runs without ComfyUI.

``install(models_dir, output_dir)`` puts small modules named ``comfy_api``,
``comfy_api.latest``, ``comfy``, ``comfy.utils``, ``comfy.model_management``,
``comfy.model_patcher``, ``comfy.cli_args`` and ``folder_paths`` into ``sys.modules``.
They mirror the signatures of ComfyUI 0.3.64's V3 API (``comfy_api/latest/_io.py``,
``_ui.py``) closely enough that a node written against the stand-ins is written against
ComfyUI; the integration tier then checks the same nodes in a real ComfyUI.
``load_pack(path)`` imports the repository the way ComfyUI's ``load_custom_node`` does:
as a package from its ``__init__.py``. ``run_node`` calls a node as ``execution.py`` does:
validation of widget values (unless ``validate_inputs`` takes the input), then
``validate_inputs``, then ``PREPARE_CLASS_CLONE(hidden)`` and ``EXECUTE_NORMALIZED``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import os
import sys
import types
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import torch

STUB_MODULES = (
    "comfy_api",
    "comfy_api.latest",
    "comfy",
    "comfy.utils",
    "comfy.model_management",
    "comfy.model_patcher",
    "comfy.cli_args",
    "folder_paths",
)


def _module(name: str, package: bool = False) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=package)
    if package:
        module.__path__ = []
    return module


# --------------------------------------------------------------------------- comfy_api.latest.io


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"


class Input:
    Parent = None

    def __init__(
        self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None, extra_dict=None
    ):
        self.id, self.display_name, self.optional, self.tooltip, self.lazy = id, display_name, optional, tooltip, lazy
        self.extra_dict = extra_dict or {}

    @property
    def io_type(self):
        return self.Parent.io_type

    @property
    def is_widget(self) -> bool:
        return isinstance(self, WidgetInput)


class WidgetInput(Input):
    def __init__(
        self,
        id,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        default=None,
        socketless=None,
        widget_type=None,
        force_input=None,
        extra_dict=None,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default, self.socketless, self.widget_type, self.force_input = (
            default,
            socketless,
            widget_type,
            force_input,
        )


class Output:
    Parent = None

    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list

    @property
    def io_type(self):
        return self.Parent.io_type


def _comfy_type(io_type: str, input_base=Input, input_class=None):
    input_class = input_class or type("Input", (input_base,), {})
    output_class = type("Output", (Output,), {})
    parent = type(
        io_type.title().replace("_", ""), (), {"io_type": io_type, "Input": input_class, "Output": output_class}
    )
    input_class.Parent = parent
    output_class.Parent = parent
    return parent


class _BooleanInput(WidgetInput):
    def __init__(
        self,
        id,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        default=None,
        label_on=None,
        label_off=None,
        socketless=None,
        force_input=None,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.label_on, self.label_off = label_on, label_off


class _IntInput(WidgetInput):
    def __init__(
        self,
        id,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        default=None,
        min=None,
        max=None,
        step=None,
        control_after_generate=None,
        display_mode=None,
        socketless=None,
        force_input=None,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.min, self.max, self.step, self.control_after_generate, self.display_mode = (
            min,
            max,
            step,
            control_after_generate,
            display_mode,
        )


class _FloatInput(WidgetInput):
    def __init__(
        self,
        id,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        default=None,
        min=None,
        max=None,
        step=None,
        round=None,
        display_mode=None,
        socketless=None,
        force_input=None,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.min, self.max, self.step, self.round, self.display_mode = min, max, step, round, display_mode


class _StringInput(WidgetInput):
    def __init__(
        self,
        id,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        multiline=False,
        placeholder=None,
        default=None,
        dynamic_prompts=None,
        socketless=None,
        force_input=None,
    ):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts


class _ComboInput(WidgetInput):
    def __init__(
        self,
        id,
        options=None,
        display_name=None,
        optional=False,
        tooltip=None,
        lazy=None,
        default=None,
        control_after_generate=None,
        upload=None,
        image_folder=None,
        remote=None,
        socketless=None,
    ):
        if isinstance(options, type) and issubclass(options, Enum):
            options = [v.value for v in options]
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
        self.options, self.control_after_generate = options, control_after_generate


Boolean = _comfy_type("BOOLEAN", input_class=_BooleanInput)
Int = _comfy_type("INT", input_class=_IntInput)
Float = _comfy_type("FLOAT", input_class=_FloatInput)
String = _comfy_type("STRING", input_class=_StringInput)
Combo = _comfy_type("COMBO", input_class=_ComboInput)
Image = _comfy_type("IMAGE")
Mask = _comfy_type("MASK")
Audio = _comfy_type("AUDIO")
Latent = _comfy_type("LATENT")
Video = _comfy_type("VIDEO")
Clip = _comfy_type("CLIP")
Model = _comfy_type("MODEL")
Conditioning = _comfy_type("CONDITIONING")


def Custom(io_type: str):
    return _comfy_type(io_type)


@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = None
    outputs: list = None
    hidden: list = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self):
        inputs = [i.id for i in self.inputs or []]
        outputs = [o.id for o in self.outputs or []]
        issues = []
        if len(set(inputs)) != len(inputs):
            issues.append(f"Input ids must be unique, but {[k for k, n in Counter(inputs).items() if n > 1]} are not.")
        if len(set(outputs)) != len(outputs):
            issues.append(
                f"Output ids must be unique, but {[k for k, n in Counter(outputs).items() if n > 1]} are not."
            )
        if set(inputs) & set(outputs):
            issues.append(f"Ids must be unique between inputs and outputs, but {set(inputs) & set(outputs)} are not.")
        if issues:
            raise ValueError("\n".join(issues))

    def finalize(self):
        if self.is_output_node:
            self.hidden = list(self.hidden or [])
            for h in (Hidden.prompt, Hidden.extra_pnginfo):
                if h not in self.hidden:
                    self.hidden.append(h)
        for i, output in enumerate(self.outputs or []):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"


class HiddenHolder:
    def __init__(self, unique_id=None, prompt=None, extra_pnginfo=None, dynprompt=None):
        self.unique_id, self.prompt, self.extra_pnginfo, self.dynprompt = unique_id, prompt, extra_pnginfo, dynprompt

    @classmethod
    def from_dict(cls, d: dict) -> "HiddenHolder":
        return cls(d.get(Hidden.unique_id), d.get(Hidden.prompt), d.get(Hidden.extra_pnginfo), d.get(Hidden.dynprompt))


class NodeOutput:
    def __init__(self, *args: Any, ui=None, expand: dict = None, block_execution: str = None):
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    def __getitem__(self, index):
        return self.args[index]


class ComfyNode:
    hidden: HiddenHolder = None
    SCHEMA = None

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        schema = cls.define_schema()
        schema.finalize()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def PREPARE_CLASS_CLONE(cls, hidden_inputs: dict):
        clone = type(cls.__name__, (cls,), {})
        clone.hidden = HiddenHolder.from_dict(hidden_inputs)
        return clone

    @classmethod
    def EXECUTE_NORMALIZED(cls, *args, **kwargs) -> NodeOutput:
        out = cls.execute(*args, **kwargs)
        if out is None:
            return NodeOutput()
        if isinstance(out, NodeOutput):
            return out
        if isinstance(out, tuple):
            return NodeOutput(*out)
        raise TypeError(
            f"Invalid return type from node: {type(out)} (ComfyUI 0.3.64 accepts NodeOutput or a tuple here)"
        )


def first_real_override(cls, name: str):
    """The classmethod ``name`` when a node class overrides ComfyNode's, else None (as execution.py)."""
    base = getattr(ComfyNode, name).__func__
    method = getattr(cls, name)
    return None if method.__func__ is base else method


# --------------------------------------------------------------------------- comfy_api.latest.ui


class SavedResult(dict):
    def __init__(self, filename: str, subfolder: str, type: FolderType):
        super().__init__(filename=filename, subfolder=subfolder, type=type.value)


class _UIOutput(ABC):
    @abstractmethod
    def as_dict(self) -> dict: ...


class PreviewVideo(_UIOutput):
    def __init__(self, values, **kwargs):
        self.values = values

    def as_dict(self):
        return {"images": self.values, "animated": (True,)}


class PreviewText(_UIOutput):
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self):
        return {"text": (self.value,)}


class ComfyExtension(ABC):
    async def on_load(self) -> None:  # noqa: B027 - an optional hook, a no-op unless overridden (as in ComfyUI)
        pass

    @abstractmethod
    async def get_node_list(self) -> list: ...


@dataclass
class VideoComponents:
    images: Any
    frame_rate: Fraction
    audio: Optional[dict] = None
    metadata: Optional[dict] = None


class VideoFromComponents:
    def __init__(self, components: VideoComponents):
        self._components = components

    def get_components(self) -> VideoComponents:
        return self._components


# --------------------------------------------------------------------------- comfy.*


class InterruptProcessingException(Exception):
    pass


@dataclass
class Recorder:
    """What the nodes asked of ComfyUI during a test."""

    progress: list = field(default_factory=list)  # (node_id, value, total, preview)
    loaded: list = field(default_factory=list)  # (patchers, force_full_load)
    interrupt_after: Optional[int] = None  # set the interrupt flag after this many progress updates
    interrupted: bool = False

    def reset(self):
        self.progress.clear()
        self.loaded.clear()
        self.interrupt_after = None
        self.interrupted = False


RECORDER = Recorder()


def _throw_if_interrupted():
    if RECORDER.interrupted:
        RECORDER.interrupted = False
        raise InterruptProcessingException()


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total, self.current, self.node_id = total, 0, node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        # ComfyUI's hook (main.py hijack_progress) checks for interruption on every update
        _throw_if_interrupted()
        RECORDER.progress.append((self.node_id, self.current, self.total, preview))
        if RECORDER.interrupt_after is not None and len(RECORDER.progress) >= RECORDER.interrupt_after:
            RECORDER.interrupted = True

    def update(self, value):
        self.update_absolute(self.current + value)


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        if isinstance(getattr(type(model), "device", None), property):
            raise AttributeError("ModelPatcher sets model.device; the module has a read-only device property")
        self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size


def _load_models_gpu(
    models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False
):
    for patcher in models:
        patcher.model.to(patcher.load_device)
    RECORDER.loaded.append((list(models), force_full_load))


# --------------------------------------------------------------------------- folder_paths


def _make_folder_paths(models_dir: Path, output_dir: Path) -> types.ModuleType:
    fp = _module("folder_paths")
    fp.models_dir = str(models_dir)
    fp.supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    fp.folder_names_and_paths = {
        "diffusion_models": (
            [str(models_dir / "unet"), str(models_dir / "diffusion_models")],
            set(fp.supported_pt_extensions),
        ),
        "vae": ([str(models_dir / "vae")], set(fp.supported_pt_extensions)),
        "text_encoders": (
            [str(models_dir / "text_encoders"), str(models_dir / "clip")],
            set(fp.supported_pt_extensions),
        ),
    }

    def add_model_folder_path(folder_name, full_folder_path, is_default=False):
        if folder_name in fp.folder_names_and_paths:
            paths = fp.folder_names_and_paths[folder_name][0]
            if full_folder_path in paths:
                if is_default and paths[0] != full_folder_path:
                    paths.remove(full_folder_path)
                    paths.insert(0, full_folder_path)
            elif is_default:
                paths.insert(0, full_folder_path)
            else:
                paths.append(full_folder_path)
        else:
            fp.folder_names_and_paths[folder_name] = ([full_folder_path], set())

    def get_folder_paths(folder_name):
        return fp.folder_names_and_paths[folder_name][0][:]

    def get_filename_list(folder_name):
        paths, extensions = fp.folder_names_and_paths[folder_name]
        names = set()
        for base in paths:
            for root, _, files in os.walk(base, followlinks=True):
                for name in files:
                    if not extensions or os.path.splitext(name)[1].lower() in extensions:
                        names.add(os.path.relpath(os.path.join(root, name), base).replace(os.sep, "/"))
        return sorted(names)

    def get_full_path(folder_name, filename):
        for base in fp.folder_names_and_paths[folder_name][0]:
            path = os.path.join(base, os.path.normpath(filename))
            if os.path.isfile(path):
                return path
        return None

    def get_output_directory():
        return str(output_dir)

    def get_save_image_path(filename_prefix, output_dir, image_width=0, image_height=0):
        subfolder = os.path.dirname(os.path.normpath(filename_prefix))
        filename = os.path.basename(os.path.normpath(filename_prefix))
        full_output_folder = os.path.join(output_dir, subfolder)
        if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
            raise Exception("**** ERROR: Saving image outside the output folder is not allowed.")
        counter = 1
        if os.path.isdir(full_output_folder):
            for name in os.listdir(full_output_folder):  # numbered names: {filename}_{counter:05}_...
                digits = name[len(filename) + 1 :].split("_")[0]
                if name.startswith(filename + "_") and digits.isdigit():
                    counter = max(counter, int(digits) + 1)
        return full_output_folder, filename, counter, subfolder, filename_prefix

    for function in (
        add_model_folder_path,
        get_folder_paths,
        get_filename_list,
        get_full_path,
        get_output_directory,
        get_save_image_path,
    ):
        setattr(fp, function.__name__, function)
    return fp


# --------------------------------------------------------------------------- install / load / run


def install(models_dir: Path, output_dir: Path) -> dict:
    """Put the stand-ins into sys.modules; returns what they replaced (for ``uninstall``)."""
    saved = {name: sys.modules.get(name) for name in STUB_MODULES}

    io = _module("comfy_api.latest._io")
    for name, value in dict(
        FolderType=FolderType,
        NumberDisplay=NumberDisplay,
        Hidden=Hidden,
        Input=Input,
        WidgetInput=WidgetInput,
        Output=Output,
        Boolean=Boolean,
        Int=Int,
        Float=Float,
        String=String,
        Combo=Combo,
        Image=Image,
        Mask=Mask,
        Audio=Audio,
        Latent=Latent,
        Video=Video,
        Clip=Clip,
        Model=Model,
        Conditioning=Conditioning,
        Custom=Custom,
        Schema=Schema,
        NodeOutput=NodeOutput,
        ComfyNode=ComfyNode,
        HiddenHolder=HiddenHolder,
    ).items():
        setattr(io, name, value)
    ui = _module("comfy_api.latest._ui")
    ui.SavedResult, ui.PreviewVideo, ui.PreviewText = SavedResult, PreviewVideo, PreviewText

    latest = _module("comfy_api.latest", package=True)
    latest.io, latest.ui, latest.ComfyExtension = io, ui, ComfyExtension
    latest.InputImpl = types.SimpleNamespace(VideoFromComponents=VideoFromComponents)
    latest.Types = types.SimpleNamespace(VideoComponents=VideoComponents)
    latest.Input = types.SimpleNamespace()
    api = _module("comfy_api", package=True)
    api.latest = latest

    comfy = _module("comfy", package=True)
    utils = _module("comfy.utils")
    utils.ProgressBar = ProgressBar
    mm = _module("comfy.model_management")
    cpu = torch.device("cpu")
    mm.InterruptProcessingException = InterruptProcessingException
    mm.throw_exception_if_processing_interrupted = _throw_if_interrupted
    mm.get_torch_device = mm.unet_offload_device = mm.intermediate_device = mm.vae_device = mm.text_encoder_device = (
        lambda: cpu
    )
    mm.should_use_bf16 = lambda device=None, **kw: False
    mm.load_models_gpu = _load_models_gpu
    mm.current_loaded_models = []
    mm.soft_empty_cache = lambda force=False: None
    patcher = _module("comfy.model_patcher")
    patcher.ModelPatcher = ModelPatcher
    cli_args = _module("comfy.cli_args")
    cli_args.args = types.SimpleNamespace(disable_metadata=False, cpu=True)
    comfy.utils, comfy.model_management, comfy.model_patcher, comfy.cli_args = utils, mm, patcher, cli_args

    for module in (
        api,
        latest,
        comfy,
        utils,
        mm,
        patcher,
        cli_args,
        _make_folder_paths(Path(models_dir), Path(output_dir)),
    ):
        sys.modules[module.__name__] = module
    return saved


def uninstall(saved: dict, package_name: str) -> None:
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    for name in [n for n in sys.modules if n == package_name or n.startswith(package_name + ".")]:
        del sys.modules[name]


def load_pack(pack_dir: Path, package_name: str) -> types.ModuleType:
    """Import the pack as ComfyUI does: a package from its folder's __init__.py."""
    spec = importlib.util.spec_from_file_location(package_name, str(Path(pack_dir) / "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[package_name] = module
    spec.loader.exec_module(module)
    return module


class ValidationFailed(ValueError):
    """What /prompt would answer with a 400 (node_errors)."""


def check_widget_value(inp, value) -> Optional[str]:
    """ComfyUI's built-in widget checks (execution.validate_inputs) for one value."""
    if isinstance(inp, (_IntInput, _FloatInput)):
        if inp.min is not None and value < inp.min:
            return f"Value {value} smaller than min of {inp.min}: {inp.id}"
        if inp.max is not None and value > inp.max:
            return f"Value {value} bigger than max of {inp.max}: {inp.id}"
    if isinstance(inp, _ComboInput) and value not in inp.options:
        return f"Value not in list: {inp.id}: {value!r} not in {inp.options}"
    return None


def run_node(node_cls, hidden: Optional[dict] = None, **inputs) -> NodeOutput:
    """Validate and execute one node the way ComfyUI's execution.py does."""
    schema = node_cls.GET_SCHEMA()
    validate = first_real_override(node_cls, "validate_inputs")
    validate_args = inspect.getfullargspec(validate).args[1:] if validate is not None else []
    errors = []
    for inp in schema.inputs:
        if inp.id not in inputs:
            if not inp.optional:
                errors.append(f"Required input is missing: {inp.id}")
            continue
        if inp.is_widget and inp.id not in validate_args:
            problem = check_widget_value(inp, inputs[inp.id])
            if problem:
                errors.append(problem)
    unknown = set(inputs) - {i.id for i in schema.inputs}
    if unknown:
        errors.append(f"unknown inputs {sorted(unknown)}")
    if not errors and validate is not None:
        result = validate(**{k: inputs.get(k) for k in validate_args})
        if result is not True:
            errors.append(f"Custom validation failed for node: {result}")
    if errors:
        raise ValidationFailed("; ".join(errors))
    hidden_inputs = {Hidden.unique_id: "1", Hidden.prompt: {}, Hidden.extra_pnginfo: {}}
    hidden_inputs.update(hidden or {})
    clone = node_cls.PREPARE_CLASS_CLONE(hidden_inputs)
    return clone.EXECUTE_NORMALIZED(**inputs)
