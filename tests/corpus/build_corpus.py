"""Writes the test corpus notebooks (committed): ``python tests/corpus/build_corpus.py``.

Each notebook is a list of code cells given as (source, tags); markdown cells are strings.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

KALE_BASIC = [
    "# Kale pipeline: load, clean, train, evaluate",
    ("import numpy as np\nimport json", ["imports"]),
    ("from collections import Counter", []),  # continues the imports block, as in Kale
    ("def scale(values, factor):\n    return [v * factor for v in values]", ["functions"]),
    ("n_rows = 100\nfactor = 2.5\nseed = 7", ["pipeline-parameters"]),
    ("print('exploring')", []),  # continues pipeline-parameters in Kale: runs as setup here
    ("rng = np.random.default_rng(seed)\nraw = list(rng.integers(0, 10, n_rows))", ["step:load_data"]),
    ("counts = Counter(raw)", []),
    ("clean = scale([v for v in raw if v > 0], factor)", ["step:clean_data", "prev:load_data"]),
    ("train_x = clean[: len(clean) // 2]\ntest_x = clean[len(clean) // 2 :]", ["step:split", "prev:clean_data"]),
    ("model = float(np.mean(train_x))", ["step:train", "prev:split", "limit:nvidia.com/gpu:1"]),
    ("accuracy = 1.0 - abs(model - float(np.mean(test_x))) / model\nn_distinct = len(counts)",
     ["step:evaluate", "prev:train", "prev:split", "prev:load_data"]),
    ("print(raw[:5])", ["skip"]),
    ("print(accuracy)\nprint(n_distinct)", ["pipeline-metrics"]),
]

KALE_LEGACY = [
    ("x0 = 'before any step'", []),  # belongs to no step in Kale
    ("import math", ["imports"]),
    ("base = 3", ["block:make_base"]),
    ("base_sq = base ** 2", ["block:"]),  # bare block: continues make_base
    ("ratio = math.sqrt(base_sq)", ["block:use_base", "prev:make_base"]),
    ("extra = 1", ["step:make_base"]),  # the same step name again merges into make_base
    ("total = ratio + base", ["step:sum_up", "prev:use_base"]),
    ("unrelated = 5", ["step:side", "annotation:team:ml", "label:tier:gold", "image:python:3.11"]),
]

KALE_FUNCTIONS = [
    ("import statistics", ["imports"]),
    ("threshold = 0.5", ["pipeline-parameters"]),
    ("data = [0.1, 0.7, 0.9, 0.3]\nweights = [1, 2, 3, 4]\n"
     "def weighted(xs):\n    return sum(x * w for x, w in zip(xs, weights))", ["step:prepare"]),
    ("def above(xs):\n    return [x for x in xs if x > threshold]\n"
     "def summary(xs):\n    return weighted(above(xs))", ["step:helpers", "prev:prepare"]),
    ("result = summary(data)", ["step:report", "prev:helpers"]),
    ("mean = statistics.mean(data)", ["step:stats"]),  # no prev: reads data from a non-ancestor (warning)
]

# The shape of Kale's own test notebook pipeline_parameters_and_metrics.ipynb: pipeline-metrics prints two
# pipeline parameters and a step's result (Kale accepts it).
KALE_PARAMETERS_METRICS = [
    ("import numpy as np", ["imports"]),
    ("d1 = 5\nd2 = 6\nbooltest = True\nstrtest = 'test'", ["pipeline-parameters"]),
    ("rnd_matrix = np.random.rand(d1, d2)", ["limit:nvidia.com/gpu:2", "step:create_matrix"]),
    ("sum_result = rnd_matrix.sum()", ["prev:create_matrix", "step:sum_matrix"]),
    ("print(d1)\nprint(d2)\nprint(sum_result)", ["pipeline-metrics"]),
]

NB2PROD_TAGS = [
    ("import math\nimport numpy as np", ["setup"]),
    ("epochs = 3\nlr = 0.01\nname = 'run'\nuse_gpu = False\nlayers = [8, 4]\nopts = {'a': 1}\nnote = None",
     ["parameters"]),
    ("xs = np.arange(10) * lr", ["stage:load", "resources:cpu=2", "resources:memory=1GiB", "retries:2"]),
    ("ys = xs ** 2", []),
    ("w = float(ys.mean()) * epochs", ["stage:fit", "gpu", "timeout:30", "nocache"]),
    ("loss = math.fabs(w - 1.0)\nok = loss < 10", ["stage:score", "metrics"]),
    ("print(loss)", ["skip"]),
    ("report = f'{name}: {loss:.3f}'", ["stage:report", "after:fit"]),
]

NB2PROD_MAGICS = [
    ("%load_ext nb2prod\n%matplotlib inline", []),
    ("%%stage load --retries 1 --memory 512M\nitems = list(range(5))", []),
    ("%%stage grow --after load --cpu 2 --timeout 60\n%time items.append(5)\nsize = len(items)", []),
    ("%%time\ntotal = sum(items)", ["stage:sum"]),
    ("%%html\n<b>done</b>", []),
]

PAPERMILL_PLAIN = [
    "# A papermill notebook: no stage tags, one `main` stage",
    ("alpha = 0.5\nlabel = 'demo'", ["parameters"]),
    ("values = [alpha * i for i in range(4)]", []),
    ("label = label.upper()\nvalues.reverse()", []),
    ("print(label, values)", []),
]

UNTUNED_SALES = [
    "# Sales exploration (written before anyone thought of pipelines)",
    ("import pandas as pd\nimport numpy as np\nimport matplotlib.pyplot as plt\n%matplotlib inline", []),
    ("df = pd.DataFrame({'region': ['n', 's', 'n', None], 'amount': [10.0, None, 7.5, 3.0]})\ndisplay(df.head())",
     ["stage:load"]),
    ("df.fillna({'amount': 0}, inplace=True)\ndf['region'] = df['region'].fillna('unknown')\ndf.describe()",
     ["stage:clean"]),
    ("def add_tax(frame, rate=0.2):\n    out = frame.copy()\n    out['gross'] = out['amount'] * (1 + rate)\n"
     "    return out\n\ndef top_regions(frame, n=2):\n    return frame.groupby('region')['gross'].sum().nlargest(n)",
     ["stage:helpers"]),
    ("gross = add_tax(df)\nsummaries = []\nfor region, part in gross.groupby('region'):\n"
     "    summaries.append((region, part['gross'].sum()))\ndisplay(summaries)", ["stage:summarize"]),
    ("best = top_regions(gross)\nplt.bar(best.index, best.values)\nplt.show()", ["stage:report"]),
]

UNTUNED_IRIS = [
    ("import numpy as np\nfrom sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression\n"
     "from sklearn.model_selection import train_test_split\nfrom sklearn.preprocessing import StandardScaler\n"
     "%matplotlib inline", []),
    ("test_size = 0.25\nC = 1.0\nrandom_state = 0", ["parameters"]),
    ("X, y = load_iris(return_X_y=True)\nprint(X.shape)", ["stage:data"]),
    ("X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=random_state)\n"
     "scaler = StandardScaler()\nscaler.fit(X_train)", ["stage:split"]),
    ("def prep(a):\n    return scaler.transform(a)", []),  # helper that captures `scaler`
    ("model = LogisticRegression(C=C, max_iter=200)\nmodel.fit(prep(X_train), y_train)", ["stage:train"]),
    ("accuracy = model.score(prep(X_test), y_test)\nprint(f'accuracy={accuracy:.3f}')", ["stage:evaluate", "metrics"]),
    ("import matplotlib.pyplot as plt\nplt.hist(model.predict(prep(X_test)))", ["skip"]),
]

UNTUNED_UNTAGGED = [
    ("import pandas as pd\n%matplotlib inline\n%load_ext autoreload\n%autoreload 2", []),
    ("rows = []\nfor i in range(5):\n    rows.append({'i': i, 'sq': i * i})\ndf = pd.DataFrame(rows)\ndisplay(df)", []),
    ("df.dropna(inplace=True)\ndf['cube'] = df['i'] ** 3\ndf.head()", []),
    ("%%time\nsummary = df.agg(['mean', 'max'])", []),
    ("summary", []),
]

INVALID = {
    "err_cycle": [("a = 1", ["stage:first", "after:second"]), ("b = a", ["stage:second"])],
    "err_unknown_after": [("a = 1", ["stage:first", "after:nowhere"])],
    "err_unknown_prev": [("a = 1", ["step:first", "prev:nowhere"])],
    "err_duplicate": [("a = 1", ["stage:twice"]), ("b = a", ["stage:other"]), ("c = b", ["stage:twice"])],
    "err_undefined": [("a = missing_name + 1", ["stage:first"])],
    "err_later_stage": [("a = b + 1", ["stage:first"]), ("b = 2", ["stage:second"])],
    "err_mixed_dialects": [("a = 1", ["stage:first"]), ("b = a", ["step:second"])],
    "err_shell": [("!pip install pandas\nimport os", ["setup"]), ("%%bash\nls", ["stage:first"])],
    "err_magic": [("%load_ext sql\nx = 1", ["stage:first"])],
    "err_malformed_tags": [("a = 1", ["stage:bad name", "retries:many", "resources:cpu=lots"])],
    "err_stage_header": [("%%stage load --bogus\nx = 1", [])],
}

NOTEBOOKS = {
    "kale_basic": KALE_BASIC, "kale_legacy": KALE_LEGACY, "kale_functions": KALE_FUNCTIONS,
    "kale_parameters_metrics": KALE_PARAMETERS_METRICS,
    "nb2prod_tags": NB2PROD_TAGS, "nb2prod_magics": NB2PROD_MAGICS, "papermill_plain": PAPERMILL_PLAIN,
    "untuned_sales": UNTUNED_SALES, "untuned_iris": UNTUNED_IRIS, "untuned_untagged": UNTUNED_UNTAGGED, **INVALID,
}


def notebook(cells: list) -> nbformat.NotebookNode:
    """A notebook of markdown (str) and code ((source, tags)) cells with stable cell ids."""
    made = []
    for i, cell in enumerate(cells):
        if isinstance(cell, str):
            made.append(new_markdown_cell(cell, id=f"md-{i}"))
        else:
            source, tags = cell
            made.append(new_code_cell(source, id=f"cell-{i}", metadata={"tags": tags} if tags else {}))
    return new_notebook(cells=made, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}})


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(notebook(cells), HERE / f"{name}.ipynb")
    (HERE / "err_not_json.ipynb").write_text('{"cells": [')
    (HERE / "err_nbformat3.ipynb").write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {},
                                                          "worksheets": [{"cells": []}], "cells": []}))


if __name__ == "__main__":
    main()
