"""Ensemble members by name. The modules import their libraries lazily, on first fit or load."""

from __future__ import annotations

from core.ml.member import Member
from core.ml.members.lgbm import LgbmMember
from core.ml.members.nhits import NhitsMember
from core.ml.members.patchtst import PatchTstMember
from core.ml.members.xgb import XgbMember

# Member class by its ``name``, as written in every artifact's metadata.
MEMBERS: dict[str, type[Member]] = {
    XgbMember.name: XgbMember,
    LgbmMember.name: LgbmMember,
    NhitsMember.name: NhitsMember,
    PatchTstMember.name: PatchTstMember,
}
