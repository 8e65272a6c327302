"""Published versions of the flows: the store (`store`), publishing and rolling back
(`publish`), and `ivr flows …` (`cli`).

The working files in IVR_FLOWS_DIR / IVR_PROMPTS_DIR are drafts; callers only ever
hear a published version. A version is immutable and named by its content hash;
one version per flow is live, and a call finishes on the version it started on.
"""
