//! HTTP/1.x framing (placeholder until the framer lands).
