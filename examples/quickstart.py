"""Build the paper's SpecViT, save it in Hub format and load it back strictly.

Run with ``make demo`` (or ``.venv/bin/python examples/quickstart.py``).
"""

import tempfile

import torch

import specvit

print(f"specvit {specvit.__version__}")
for name in specvit.list_models():
    model = specvit.create_model(name)
    print(f"  preset {name:<16} {model.num_parameters() / 1e6:6.3f} M parameters")

model = specvit.create_model("specvit_l6_h256").eval()
x = torch.randn(4, model.config.input_length).abs() + 1.0
with tempfile.TemporaryDirectory() as folder:
    model.save_pretrained(folder)
    reloaded = specvit.load(folder)
    with torch.no_grad():
        same = torch.equal(model(x), reloaded(x))
print(f"save_pretrained -> specvit.load round trip bit-exact: {same}")
