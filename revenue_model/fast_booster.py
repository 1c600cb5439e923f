"""LightGBM prediction through its C API, without the Python wrapper's per-call cost.

``Booster.predict`` rebuilds a predictor, re-parses parameters and copies the
input on every call: about 50 us per booster for one row, where the trees
themselves take a few. Here a matrix goes to ``LGBM_BoosterPredictForMat``
with a ready parameter string, and a single row to
``LGBM_BoosterPredictForMatSingleRowFast`` with a configuration prepared once
per thread (a FastConfig holds buffers, so threads must not share one). Both
are LightGBM's public C API; tests compare them with ``Booster.predict``.
"""

from __future__ import annotations

import ctypes
import threading

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

_FLOAT64, _NORMAL, _RAW = 1, 0, 1
_DOUBLE_P = ctypes.POINTER(ctypes.c_double)


class FastBooster:
    def __init__(self, booster: lgb.Booster, *, raw_score: bool = False):
        self.booster = booster  # keeps the handle alive
        self._handle = booster._handle
        self._type = ctypes.c_int(_RAW if raw_score else _NORMAL)
        self._ncol = booster.num_feature()
        self._params: dict[int, bytes] = {}
        self._local = threading.local()
        self._configs: list[ctypes.c_void_p] = []  # every thread's, freed with the booster

    def predict(self, X: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
        """One prediction per row of X (rows x features, float64, C or Fortran order)."""
        if X.shape[0] == 1:
            return self._predict_row(np.ascontiguousarray(X))
        row_major = X.flags.c_contiguous
        if not (row_major or X.flags.f_contiguous):
            X, row_major = np.ascontiguousarray(X), True
        out = np.empty(X.shape[0], dtype=np.float64)
        written = ctypes.c_int64(0)
        params = self._params.get(num_threads)
        if params is None:
            params = self._params[num_threads] = f"num_threads={num_threads}".encode()
        _safe_call(_LIB.LGBM_BoosterPredictForMat(
            self._handle, X.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(_FLOAT64),
            ctypes.c_int32(X.shape[0]), ctypes.c_int32(X.shape[1]), ctypes.c_int(int(row_major)),
            self._type, ctypes.c_int(0), ctypes.c_int(-1),
            ctypes.c_char_p(params), ctypes.byref(written), out.ctypes.data_as(_DOUBLE_P)))
        if written.value != X.shape[0]:
            raise ValueError(f"LightGBM wrote {written.value} predictions for {X.shape[0]} rows")
        return out

    def _predict_row(self, X: np.ndarray) -> np.ndarray:
        config = getattr(self._local, "config", None)
        if config is None:
            config = ctypes.c_void_p()
            _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                self._handle, self._type, ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(_FLOAT64),
                ctypes.c_int32(self._ncol), ctypes.c_char_p(b"num_threads=1"), ctypes.byref(config)))
            self._local.config = config
            self._configs.append(config)
        out = np.empty(1, dtype=np.float64)
        written = ctypes.c_int64(0)
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFast(
            config, X.ctypes.data_as(ctypes.c_void_p), ctypes.byref(written),
            out.ctypes.data_as(_DOUBLE_P)))
        return out

    def __del__(self):
        for config in getattr(self, "_configs", ()):
            _LIB.LGBM_FastConfigFree(config)
