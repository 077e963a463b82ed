"""The readers' registry and the CSV/TSV record splitter; reading every format end to end is in test_importers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from workbench.data import readers
from workbench.data.readers import get_importer, guess_format, list_importers


def test_registry() -> None:
    assert list_importers() == ["csv", "folder", "jsonl", "parquet", "tsv"]
    assert get_importer("tsv").name == "tsv"
    with pytest.raises(
        KeyError, match=r"'xml' not found. Available: \['csv', 'folder', 'jsonl', 'parquet', 'tsv'\]"
    ):
        get_importer("xml")


def test_guess_format(tmp_path: Path) -> None:
    assert guess_format("a/b.csv") == "csv"
    assert guess_format("b.TSV") == "tsv"
    assert guess_format("c.jsonl") == "jsonl"
    assert guess_format("d.parquet") == "parquet"
    assert guess_format(tmp_path) == "folder"
    with pytest.raises(ValueError, match=r"cannot guess the format of e.xlsx"):
        guess_format("e.xlsx")


_ODD_BUT_VALID = [
    "a,b\n1,2\n",
    'a,b\r\n"x, y","line1\r\nline2"\r\n',
    'a,b\n"he said ""hi""",5" TV\n',  # doubled quotes inside quotes; a quote inside an unquoted value
    'a,b\n"abc"def,x\n""a,b\n',  # text after a closing quote is kept, as in the csv module's default mode
    'a,b\n,\n\n  \n"",""\n',
    "a,b\rc,d\re,f",  # old Mac line ends, no final line break
    "a,b,\n1,2,\n",
    'a,b\n"quoted\nover\nlines",x\n"""",y\n',
]


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_record_splitter_reads_as_the_csv_module_does(delimiter: str) -> None:
    def non_blank(rows: list[list[str]]) -> list[list[str]]:
        return [row for row in rows if row not in ([], [""])]

    rng = np.random.default_rng(7)
    alphabet = ["a", "Z", " ", ",", "\t", '"', '""', "\n", "\r\n", "\r", "红", '5" TV']
    texts = [text.replace(",", delimiter) for text in _ODD_BUT_VALID]
    for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_ALL):
        for terminator in ("\r\n", "\n"):
            out = io.StringIO(newline="")
            writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=terminator)
            for _ in range(150):  # rows as wide as the header, as in any table
                writer.writerow(["".join(rng.choice(alphabet, int(rng.integers(0, 6)))) for _ in range(3)])
            texts.append(out.getvalue())
    for text in texts:
        expected = non_blank(list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)))
        got = non_blank([values for _, values in readers._split_records(text, delimiter) if values is not None])
        assert got == expected, text
