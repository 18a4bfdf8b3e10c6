"""Public request/response models (pydantic v2): the HTTP contract shown at /docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator


VIDEO_SOURCES = ("base64", "path", "url")


class VideoRef(BaseModel):
    """One video: exactly one of base64 bytes (a container file, a raw uint8 [T,H,W,3] .npy, or an .npz of
    the model's views prepared by the client: service.client.frames), a path
    under the configured allowed roots, or a URL. Uploading with the /upload routes avoids base64.

    The OpenAPI schema says so as `oneOf` three closed alternatives (so generated clients and schema-based
    testers build only valid refs); at run time the same rule is checked here, explicit nulls included."""

    model_config = ConfigDict(extra="forbid")
    base64: str | None = Field(None, min_length=1,
                               description="File bytes (mp4/webm/mkv/..., .npy frames or .npz views), base64; "
                                           "at most max_video_bytes once decoded.")
    path: str | None = Field(None, min_length=1, max_length=4096,
                             description="Path under AESRM_ALLOWED_ROOTS (shared storage).")
    url: str | None = Field(None, min_length=1, max_length=4096, description="http(s) URL (if AESRM_URL_INGEST).")
    id: str | None = Field(None, max_length=256, description="Caller's label, echoed back.")

    @model_validator(mode="before")
    @classmethod
    def _no_null_sources(cls, data):
        if isinstance(data, dict):
            for key in VIDEO_SOURCES:
                if key in data and data[key] is None:
                    raise ValueError(f"'{key}' may not be null: give exactly one of 'base64', 'path' or 'url'")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> "VideoRef":
        if sum(x is not None for x in (self.base64, self.path, self.url)) != 1:
            raise ValueError("give exactly one of 'base64', 'path' or 'url'")
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        props = target["properties"]

        def non_null(prop: dict) -> dict:
            out = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
            out.update(next(x for x in prop.get("anyOf", [prop]) if x.get("type") != "null"))
            return out

        target.pop("properties"), target.pop("additionalProperties", None), target.pop("type", None)
        target["oneOf"] = [{"title": f"Video{key.capitalize()}", "type": "object", "required": [key],
                            "properties": {key: non_null(props[key]), "id": props["id"]},
                            "additionalProperties": False} for key in VIDEO_SOURCES]
        return schema


class PairOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    both_orders: StrictBool | None = Field(None, description="Ask (A,B) and (B,A); default from settings.")


class PairRequest(PairOptions):
    a: VideoRef
    b: VideoRef


class GroupOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    both_orders: StrictBool | None = Field(None, description="Ask each pair in both orders (default true).")
    aggregation: Literal["bradley_terry", "win_rate"] = "bradley_terry"


class GroupRequest(GroupOptions):
    videos: list[VideoRef] = Field(..., min_length=1, description="The G candidates (GRPO group).")
    reference: VideoRef | None = Field(None, description="Score each candidate against this instead.")


class ModelInfo(BaseModel):
    id: str
    version: str
    checkpoint: str
    trained: bool
    backend: str
    runtime: str = Field("", description="What executes the embedded model: 'onnxruntime' or 'torch' "
                                         "(AESRM_EMBEDDED_RUNTIME); empty for a remote backend.")
    frames: int
    height: int
    width: int
    views: list[str] = Field(
        default=["frames:letterbox"],
        description="What the model sees of each video, rendered by the gateway from the same T sampled frames: "
                    "'frames:letterbox' (the whole frame fitted into height x width) and, for models that ask "
                    "for it, 'fragments:fragments:G' (G x G patches cut at native resolution).")


class DimensionScores(BaseModel):
    """One value per dimension of the model contract, plus the weighted overall. VA/VF/VP are the public
    dimensions every AesRM model has; a model with more dimensions adds them as extra keys."""

    model_config = ConfigDict(extra="allow")
    VA: float
    VF: float
    VP: float
    overall: float


class Timings(BaseModel):
    model_config = ConfigDict(extra="allow")
    ingest_ms: float = 0.0
    cache_ms: float = 0.0
    decode_ms: float = 0.0
    queue_ms: float = 0.0
    inference_ms: float = 0.0
    aggregate_ms: float = 0.0
    total_ms: float = 0.0


class Novelty(BaseModel):
    """How far each video is from the clips the model was trained on (distance of its embedding from the
    training distribution, normalised so 1.0 = the 99th percentile of training clips). Out of distribution
    (max > threshold) means the model's judgement of the pair is extrapolation, not knowledge."""

    a: float = Field(..., ge=0, description="Novelty of video A.")
    b: float = Field(..., ge=0, description="Novelty of video B.")
    max: float = Field(..., ge=0)
    threshold: float = Field(..., description="max above this = out of distribution.")
    in_distribution: bool


class PairResponse(BaseModel):
    preference: DimensionScores = Field(..., description="P(A preferred over B) per dimension.")
    logits: DimensionScores = Field(..., description="Position-debiased logits (positive = A).")
    criteria: dict[str, float] | None = Field(None, description="P(A>B) per fine-grained criterion.")
    order_disagreement: DimensionScores | None = Field(
        None, description="|P_AB - (1 - P_BA)| per dimension; null in single-order mode.")
    novelty: Novelty | None = Field(
        None, description="Per-video out-of-distribution signal; null when the model has none (e.g. proxy 1.1.0).")
    both_orders: bool
    cache: Literal["hit", "miss"]
    model: ModelInfo
    timings_ms: Timings


class ItemError(BaseModel):
    code: str
    message: str


class GroupItem(BaseModel):
    index: int
    id: str | None = None
    reward: float | None = Field(None, description="The scalar to train on (see 'aggregation').")
    win_rate: float | None = None
    bradley_terry: float | None = None
    vs_reference: DimensionScores | None = Field(None, description="P(candidate > reference), reference mode.")
    dimensions: DimensionScores | None = Field(None, description="Per-dimension value of the aggregation.")
    error: ItemError | None = None


class GroupResponse(BaseModel):
    results: list[GroupItem]
    aggregation: Literal["bradley_terry", "win_rate", "reference"]
    both_orders: bool
    pairs_scored: int
    order_disagreement_mean: float | None = None
    order_disagreement_max: float | None = None
    cache_hits: int
    cache_misses: int
    model: ModelInfo
    timings_ms: Timings


class ErrorBody(BaseModel):
    code: str
    message: str
    item: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# ---- many groups per call (POST /v1/groups): GRPO batches of several prompts scored in one pipeline run ----

class GroupSpec(BaseModel):
    """One prompt's candidates inside a /v1/groups request."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=256, description="Caller's group id (prompt id / hash), echoed.")
    videos: list[VideoRef] = Field(..., min_length=1, description="The G candidates of this prompt.")
    reference: VideoRef | None = Field(None, description="Score each candidate against this instead.")


class GroupsRequest(GroupOptions):
    groups: list[GroupSpec] = Field(..., min_length=1, description="Several prompt groups, scored together.")


class GroupsUploadGroup(BaseModel):
    """Manifest entry of /v1/groups/upload: `count` consecutive `videos` parts (then one reference part)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=256)
    count: int = Field(..., ge=1)
    reference: bool = False


class GroupsManifest(GroupOptions):
    groups: list[GroupsUploadGroup] = Field(..., min_length=1)


class GroupResult(BaseModel):
    """One group's answer: per-item results as in GroupResponse, or `error` when the whole group failed
    (size out of range, fewer than two decodable videos, unreadable reference)."""

    id: str
    results: list[GroupItem] = Field(default_factory=list)
    aggregation: Literal["bradley_terry", "win_rate", "reference"]
    pairs_scored: int = 0
    order_disagreement_max: float | None = None
    error: ItemError | None = None


class GroupsResponse(BaseModel):
    groups: list[GroupResult]
    both_orders: bool
    videos: int = Field(..., description="Candidates and references received.")
    pairs_scored: int
    cache_hits: int
    cache_misses: int
    model: ModelInfo
    timings_ms: Timings
