"""The LightGBM member: a binary booster, saved as LightGBM's own text model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from core.ml.member import FloatMatrix
from core.ml.members.gbdt import GbdtMember, Vector
from core.ml.members.member_file import MEMBER_FILE
from core.ml.members.openmp import passive_openmp, prediction_threads

if TYPE_CHECKING:
    import lightgbm


@dataclass(frozen=True, slots=True, kw_only=True)
class LgbmParams:
    """Hyper-parameters; ``early_stopping_rounds`` applies only when fit gets an eval set."""

    n_estimators: int = 300
    num_leaves: int = 31
    max_depth: int = -1
    learning_rate: float = 0.05
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    early_stopping_rounds: int | None = 30
    seed: int = 0
    n_jobs: int = 2  # explicit: the library would take every core the machine has

    def booster_params(self) -> dict[str, Any]:
        """Return the parameters in LightGBM's own names."""
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "num_threads": self.n_jobs,
            # Same data, seed and threads give the same model only with these two.
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


class LgbmMember(GbdtMember[LgbmParams]):
    """LightGBM classifier; contributions are its native SHAP values (``pred_contrib``)."""

    name: ClassVar[str] = "lgbm"
    model_file: ClassVar[str] = "model.txt"
    files: ClassVar[tuple[str, ...]] = (model_file, MEMBER_FILE)
    params_type: ClassVar[type[LgbmParams]] = LgbmParams

    def _train(
        self, x: FloatMatrix, y: Vector, w: Vector | None, valid: tuple[FloatMatrix, Vector] | None
    ) -> tuple[Any, dict[str, Any]]:
        passive_openmp()
        import lightgbm as lgb

        p = self._params
        params = p.booster_params()
        train = lgb.Dataset(x, label=y, weight=w, params={"verbosity": -1})
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Callable[..., Any]] = []
        stop = p.early_stopping_rounds if valid is not None else None
        if valid is not None:
            valid_sets = [lgb.Dataset(valid[0], label=valid[1], reference=train)]
        if stop is not None:
            callbacks = [lgb.early_stopping(stop, verbose=False)]
        booster = lgb.train(
            params,
            train,
            num_boost_round=p.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        info: dict[str, Any] = {"best_iteration": None, "best_score": None}
        if stop is not None:
            best = booster.best_iteration  # 1-based: the number of trees to keep
            score = booster.best_score["valid_0"]["binary_logloss"]
            info = {"best_iteration": best - 1, "best_score": float(score)}
            # Keep only the trees up to the best round, so the saved model predicts as scored.
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        info["trees"] = booster.num_trees()
        return booster, info

    def _booster(self) -> lightgbm.Booster:
        booster: lightgbm.Booster = self._model
        return booster

    def _predict(self, x: FloatMatrix) -> Vector:
        threads = prediction_threads(len(x), self._params.n_jobs)
        out = self._booster().predict(x, num_threads=threads)
        return np.asarray(out, dtype=np.float64)

    def _contributions(self, x: FloatMatrix) -> FloatMatrix:
        out = self._booster().predict(x, pred_contrib=True, num_threads=self._params.n_jobs)
        return np.asarray(out, dtype=np.float64)

    def _model_bytes(self) -> bytes:
        return self._booster().model_to_string().encode()

    def _model_from_bytes(self, raw: bytes) -> Any:
        passive_openmp()
        import lightgbm as lgb

        return lgb.Booster(model_str=raw.decode())

    def _model_feature_count(self) -> int:
        return self._booster().num_feature()

    def library_versions(self) -> dict[str, str]:
        """Return the versions of the libraries the model was made with."""
        passive_openmp()
        import lightgbm as lgb

        return {"lightgbm": lgb.__version__, "numpy": np.__version__}
