#!/usr/bin/env python
"""gplinker command line from a checkout; the same as the installed ``gplinker`` command.

python run.py train {ner,relation,event} --train FILE --dev FILE --encoder NAME_OR_PATH --output DIR
python run.py evaluate --model DIR --data FILE [--output metrics.json]
python run.py predict --model DIR --input FILE --output FILE.jsonl
python run.py pipeline --model DIR [--model DIR ...] --input FILE --output FILE.jsonl [--html FILE]
python run.py serve --model DIR [--model DIR ...]     # HTTP API and a page (pip install -e ".[serve]")
python run.py info DIR
python run.py quickstart            # train demo models on the shipped examples, then run the pipeline
"""

import sys

from gplinker.cli import main

if __name__ == "__main__":
    sys.exit(main())
