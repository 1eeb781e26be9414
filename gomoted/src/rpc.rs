//! How gRPC failures read to the user: Go's client prints a status as
//! `rpc error: code = NotFound desc = ...`, and scripts match on that.

/// Renders a gRPC status as Go does: `rpc error: code = NotFound desc = ...`.
pub fn rpc_text(s: &tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
}
