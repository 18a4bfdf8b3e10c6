"""Typed errors: each carries a machine-readable code and its HTTP status (mapped to responses in one place,
service.api.error_handlers; this module stays free of any web framework so the engine can raise them).

Bad input is always a 4xx with a code; capacity/back-end trouble is 429/503/504 with Retry-After.
"""

from __future__ import annotations

class ServiceError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, item: str | int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        self.item = item
        self.retry_after_s = retry_after_s

    def payload(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.item is not None:
            body["item"] = self.item
        return body


def _error(name: str, status: int, code: str, doc: str) -> type[ServiceError]:
    return type(name, (ServiceError,), {"status": status, "code": code, "__doc__": doc})


# --- input (4xx) ---
InvalidRequest = _error("InvalidRequest", 422, "invalid_request", "Body does not match the schema.")
VideoTooLarge = _error("VideoTooLarge", 413, "video_too_large", "More bytes than max_video_bytes.")
VideoEmpty = _error("VideoEmpty", 400, "video_empty", "Zero-length input.")
VideoUndecodable = _error("VideoUndecodable", 422, "video_undecodable", "Not a decodable video.")
NoVideoStream = _error("NoVideoStream", 422, "no_video_stream", "Container without a video stream.")
VideoTooLong = _error("VideoTooLong", 422, "video_too_long", "Duration above max_duration_s.")
VideoTooManyPixels = _error("VideoTooManyPixels", 422, "video_too_many_pixels", "Frame above max_pixels.")
VideoTooManyFrames = _error("VideoTooManyFrames", 422, "video_too_many_frames", "Frame count above max_frames.")
InvalidTensor = _error("InvalidTensor", 422, "invalid_tensor", "Raw .npy frames not uint8 [T,H,W,3] or not resizable.")
DecodeBudgetExceeded = _error("DecodeBudgetExceeded", 422, "decode_budget_exceeded",
                              "Sampling needs more decoding than decode_budget_pixels allows (e.g. one keyframe).")
PathNotAllowed = _error("PathNotAllowed", 403, "path_not_allowed", "Path outside allowed_roots.")
PathNotFound = _error("PathNotFound", 404, "path_not_found", "Allowed path that does not exist.")
UnsupportedSource = _error("UnsupportedSource", 422, "unsupported_source", "Input kind not enabled.")
GroupSize = _error("GroupSize", 422, "group_size", "Group size out of the allowed range.")
NotEnoughValid = _error("NotEnoughValid", 422, "not_enough_valid_videos", "Too few decodable videos.")
Unauthorized = _error("Unauthorized", 401, "unauthorized", "Missing or unknown API key.")
RateLimited = _error("RateLimited", 429, "rate_limited", "Per-key rate limit exceeded.")
RequestTooLarge = _error("RequestTooLarge", 413, "request_too_large", "Body above max_request_bytes.")
RequestTimeout = _error("RequestTimeout", 408, "request_timeout", "Body not received within body_timeout_s.")
JobNotFound = _error("JobNotFound", 404, "job_not_found", "Unknown or expired job id.")
JobNotCancellable = _error("JobNotCancellable", 409, "job_not_cancellable", "Job already finished.")
UrlNotAllowed = _error("UrlNotAllowed", 403, "url_not_allowed", "URL scheme/host/address refused (SSRF guard).")
UrlFetchFailed = _error("UrlFetchFailed", 422, "url_fetch_failed", "URL could not be fetched (status, timeout).")

# --- capacity / backend (429 / 5xx with Retry-After) ---
Overloaded = _error("Overloaded", 429, "overloaded", "Admission queue full; retry later.")
BackendUnavailable = _error("BackendUnavailable", 503, "backend_unavailable", "Scoring backend down.")
BackendTimeout = _error("BackendTimeout", 504, "backend_timeout", "Scoring backend too slow.")
BackendError = _error("BackendError", 502, "backend_error", "Backend answered with an error.")

RETRY_AFTER_DEFAULT_S = {429: 1.0, 503: 2.0, 504: 1.0}


def retry_after_s(exc: ServiceError) -> float | None:
    """Seconds a client should wait before retrying, or None when retrying will not help."""
    return exc.retry_after_s if exc.retry_after_s is not None else RETRY_AFTER_DEFAULT_S.get(exc.status)
