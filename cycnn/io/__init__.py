"""Files: atomic writing, the model file format, architecture files and ONNX export."""
from cycnn.io.model_file import load_model, save_model

__all__ = ["load_model", "save_model"]
