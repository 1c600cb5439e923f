"""The model's output frame: a DataFrame whose records are cheap.

MLflow's scoring server turns what ``predict`` returns into JSON with
``DataFrame.to_dict(orient="records")``, which costs pandas about 0.3 ms for
one row of four floats: as much as the model's own work. ``Predictions`` is
a DataFrame in every other respect (and anything derived from it is a plain
one); its float records come from one ``tolist`` instead (25 us).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class Predictions(pd.DataFrame):
    @property
    def _constructor(self):
        return pd.DataFrame

    def to_dict(self, orient="dict", *args, **kwargs):
        if orient == "records" and not args and not kwargs and self.columns.is_unique \
                and all(dtype == np.float64 for dtype in self.dtypes):
            columns = self.columns.tolist()
            return [dict(zip(columns, row)) for row in self.to_numpy().tolist()]
        return super().to_dict(orient, *args, **kwargs)
