"""Runs inside a transform job's "container" (a subprocess): the script's handler functions over the batches.

As the framework containers' inference toolkit does: ``model_fn(model_dir)`` once, then for each
request ``input_fn(body, content_type)`` → ``predict_fn(data, model)`` → ``output_fn(prediction,
accept)``. Reads ``spec.json`` (written by :mod:`cvtune.emulator.transform`): the code, the model
directory and, per input object, the batches (lists of records) to send; writes each object's
responses, joined with newlines (``AssembleWith=Line``), to its output file. Standard library only:
it runs in the job's environment, not the emulator's.
"""

import importlib.util
import json
import os
import sys


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    sys.path.insert(0, spec["code_dir"])
    module_spec = importlib.util.spec_from_file_location("inference_script", os.path.join(spec["code_dir"], spec["program"]))
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    model = script.model_fn(spec["model_dir"])
    input_fn = getattr(script, "input_fn", None) or (lambda body, content_type: body)
    predict_fn = getattr(script, "predict_fn", None) or (lambda data, m: m.predict(data))
    output_fn = getattr(script, "output_fn", None) or (lambda prediction, accept: str(prediction))
    for item in spec["objects"]:
        responses = []
        for batch in item["batches"]:
            body = "\n".join(batch) + "\n"
            prediction = predict_fn(input_fn(body, spec["content_type"]), model)
            response = output_fn(prediction, spec["accept"])
            if isinstance(response, tuple):
                response = response[0]
            if isinstance(response, bytes):
                response = response.decode("utf-8")
            responses.append(str(response).rstrip("\n"))
        with open(item["output"], "w") as f:
            f.write("\n".join(r for r in responses if r) + ("\n" if responses else ""))


if __name__ == "__main__":
    main(sys.argv[1])
