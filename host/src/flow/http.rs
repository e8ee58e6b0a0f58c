//! The HTTP answer of a hook other than `passthru`, as the server sends it and `passthru run`
//! shows it: one function, so the two never differ.

use crate::answer::select_body;
use crate::flow::StatusMap;
use crate::sandbox::{Branch, HookAnswer};

/// What Exotel is answered for a hook's answer: the branch's status (and the case in the body)
/// for `switch`; `200` with `text/plain` or `application/json` for the others. The server's
/// answer and `passthru run`'s are this, so they never differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookHttp {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub body: Option<String>,
    /// The branch, for `switch`.
    pub branch: Option<Branch>,
}

/// The HTTP answer for `answer`, with the flow's statuses and the request's `Exotel-Version`.
pub fn hook_http(answer: &HookAnswer, statuses: &StatusMap, version: Option<&str>) -> HookHttp {
    let ok = |content_type, body| HookHttp {
        status: 200,
        content_type: Some(content_type),
        body: Some(body),
        branch: None,
    };
    match answer {
        HookAnswer::Select { branch, case } => {
            let body = case.as_deref().map(select_body);
            HookHttp {
                status: statuses.for_branch(*branch),
                content_type: body.is_some().then_some("text/plain"),
                body,
                branch: Some(*branch),
            }
        }
        HookAnswer::Text(text) => ok("text/plain", text.clone()),
        HookAnswer::Connect(plan) => ok("application/json", plan.render(version).to_string()),
        HookAnswer::Gather(plan) => ok("application/json", plan.render().to_string()),
    }
}
