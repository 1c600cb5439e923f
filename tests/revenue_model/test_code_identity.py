"""Which copy of revenue_model runs a model: the fingerprint and the check the pyfunc makes at load."""

import shutil

import pytest

from revenue_model.code_identity import PACKAGE_DIR, ForeignCode, check_code_in_use, code_fingerprint


@pytest.fixture
def two_copies(tmp_path):
    copies = []
    for name in ("a", "b"):
        target = tmp_path / name / "revenue_model"
        shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(target)
    return copies


def test_identical_copies_have_one_fingerprint_and_bytecode_does_not_count(two_copies):
    a, b = two_copies
    (b / "__pycache__").mkdir(exist_ok=True)
    (b / "__pycache__" / "features.cpython-311.pyc").write_bytes(b"\x00compiled")
    (b / "notes.txt").write_text("not code")
    assert code_fingerprint(a) == code_fingerprint(b)
    assert len(code_fingerprint(a)) == 64


@pytest.mark.parametrize("change", ["one byte", "a renamed file", "a new module", "a moved boundary"])
def test_any_change_to_the_code_changes_the_fingerprint(two_copies, change):
    a, b = two_copies
    if change == "one byte":
        text = (b / "features.py").read_text()
        (b / "features.py").write_text(text.replace("0", "1", 1))
    elif change == "a renamed file":
        (b / "metrics.py").rename(b / "metrics2.py")
    elif change == "a new module":
        (b / "extra.py").write_text("X = 1\n")
    else:  # the same bytes, split differently between two files
        (a / "x.py").write_text("ab")
        (a / "y.py").write_text("")
        (b / "x.py").write_text("a")
        (b / "y.py").write_text("b")
    assert code_fingerprint(a) != code_fingerprint(b)


def test_the_bundled_copy_itself_and_identical_code_are_accepted(two_copies):
    a, b = two_copies
    check_code_in_use(a, in_use_dir=a)
    check_code_in_use(a, in_use_dir=b)


def test_different_code_is_refused_naming_both_copies_and_fingerprints(two_copies):
    bundled, in_use = two_copies
    (in_use / "features.py").write_text((in_use / "features.py").read_text() + "\n# changed\n")
    with pytest.raises(ForeignCode) as error:
        check_code_in_use(bundled, in_use_dir=in_use)
    message = str(error.value)
    assert str(bundled) in message and str(in_use) in message
    assert code_fingerprint(bundled)[:16] in message and code_fingerprint(in_use)[:16] in message


def test_a_model_without_a_bundled_copy_is_refused(tmp_path):
    with pytest.raises(ForeignCode, match="no bundled revenue_model"):
        check_code_in_use(tmp_path / "code" / "revenue_model")
