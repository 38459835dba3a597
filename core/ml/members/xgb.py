"""The XGBoost member: a ``binary:logistic`` booster on the histogram method, saved as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from core.ml.member import FloatMatrix
from core.ml.members.gbdt import GbdtMember, Vector
from core.ml.members.member_file import MEMBER_FILE
from core.ml.members.openmp import passive_openmp, prediction_threads

if TYPE_CHECKING:
    import xgboost


@dataclass(frozen=True, slots=True, kw_only=True)
class XgbParams:
    """Hyper-parameters; ``early_stopping_rounds`` applies only when fit gets an eval set."""

    n_estimators: int = 300
    max_depth: int = 4
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    early_stopping_rounds: int | None = 30
    seed: int = 0
    n_jobs: int = 2  # explicit: the library would take every core the machine has

    def booster_params(self) -> dict[str, Any]:
        """Return the parameters in XGBoost's own names."""
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "seed": self.seed,
            "nthread": self.n_jobs,
            "verbosity": 0,
        }


class XgbMember(GbdtMember[XgbParams]):
    """XGBoost classifier; contributions are its native SHAP values (``pred_contribs``)."""

    name: ClassVar[str] = "xgb"
    model_file: ClassVar[str] = "model.json"
    files: ClassVar[tuple[str, ...]] = (model_file, MEMBER_FILE)
    params_type: ClassVar[type[XgbParams]] = XgbParams

    def __init__(self, params: XgbParams | None = None) -> None:
        super().__init__(params)
        self._threads_set: tuple[Any, int] | None = None  # (booster, its nthread) last set

    def _train(
        self, x: FloatMatrix, y: Vector, w: Vector | None, valid: tuple[FloatMatrix, Vector] | None
    ) -> tuple[Any, dict[str, Any]]:
        passive_openmp()
        import xgboost as xgb

        p = self._params
        train = xgb.DMatrix(x, label=y, weight=w, nthread=p.n_jobs)
        evals = [] if valid is None else [(xgb.DMatrix(valid[0], label=valid[1]), "valid")]
        stop = p.early_stopping_rounds if evals else None
        booster = xgb.train(
            p.booster_params(),
            train,
            num_boost_round=p.n_estimators,
            evals=evals,
            early_stopping_rounds=stop,
            verbose_eval=False,
        )
        info: dict[str, Any] = {"best_iteration": None, "best_score": None}
        if stop is not None:
            best = booster.best_iteration
            info = {"best_iteration": best, "best_score": float(booster.best_score)}
            # Keep only the trees up to the best round, so the saved model predicts as scored.
            booster = booster[: best + 1]
        info["trees"] = booster.num_boosted_rounds()
        return booster, info

    def _booster(self) -> xgboost.Booster:
        booster: xgboost.Booster = self._model
        return booster

    def _predict(self, x: FloatMatrix) -> Vector:
        booster = self._booster()
        threads = prediction_threads(len(x), self._params.n_jobs)
        if self._threads_set != (booster, threads):  # a booster parameter: set on a change
            booster.set_param({"nthread": threads})
            self._threads_set = (booster, threads)
        return np.asarray(booster.inplace_predict(x), dtype=np.float64)

    def _contributions(self, x: FloatMatrix) -> FloatMatrix:
        passive_openmp()
        import xgboost as xgb

        data = xgb.DMatrix(x, nthread=self._params.n_jobs)
        return np.asarray(self._booster().predict(data, pred_contribs=True), dtype=np.float64)

    def _model_bytes(self) -> bytes:
        return bytes(self._booster().save_raw("json"))

    def _model_from_bytes(self, raw: bytes) -> Any:
        passive_openmp()
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        booster.set_param({"nthread": self._params.n_jobs})  # threads are not saved
        return booster

    def _model_feature_count(self) -> int:
        return self._booster().num_features()

    def library_versions(self) -> dict[str, str]:
        """Return the versions of the libraries the model was made with."""
        passive_openmp()
        import xgboost as xgb

        return {"xgboost": xgb.__version__, "numpy": np.__version__}
