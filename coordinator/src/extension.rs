//! GomoteExtensionService over gRPC: what this coordinator offers beyond
//! Go's GomoteService (docs/protocol.md 2.7), authenticated the same way.
//! A Go coordinator does not serve it; clients take Unimplemented as
//! "unknown".

use std::sync::Arc;

use gomote_shared::proto::gomote_extension_service_server::GomoteExtensionService;
use gomote_shared::proto::{
    BuilderCapacityRequest, BuilderCapacityResponse, DeadInstance, DeadInstancesRequest,
    DeadInstancesResponse,
};
use tonic::{Request, Response, Status};

use crate::service::identify;
use crate::{Coordinator, builder_names};

/// The tonic service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Extension {
    c: Arc<Coordinator>,
}

impl Extension {
    /// Serves `c`.
    pub fn new(c: Arc<Coordinator>) -> Extension {
        Extension { c }
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[tonic::async_trait]
impl GomoteExtensionService for Extension {
    async fn builder_capacity(
        &self,
        req: Request<BuilderCapacityRequest>,
    ) -> Result<Response<BuilderCapacityResponse>, Status> {
        let id = identify(&self.c, &req).await?;
        let bt = &req.get_ref().builder_type;
        if bt.is_empty() {
            return Err(Status::invalid_argument("invalid builder type"));
        }
        let b = builder_names::resolve(&self.c.config, bt)?;
        let load = self.c.queues.load(&b.host_type, &id.owner);
        Ok(Response::new(BuilderCapacityResponse {
            builder_type: b.name.clone(),
            host_type: b.host_type.clone(),
            capacity: count(load.capacity),
            running: count(load.in_use),
            queued: count(load.waiting),
            running_yours: count(load.in_use_yours),
            queued_yours: count(load.waiting_yours),
        }))
    }

    async fn dead_instances(
        &self,
        req: Request<DeadInstancesRequest>,
    ) -> Result<Response<DeadInstancesResponse>, Status> {
        let id = identify(&self.c, &req).await?;
        let instances = self
            .c
            .table
            .all()
            .into_iter()
            .filter(|i| i.record().owner == id.owner)
            .filter_map(|i| {
                let d = i.death()?;
                Some(DeadInstance {
                    gomote_id: i.id(),
                    died: gomote_shared::timefmt::unix(d.when),
                    reason: d.why,
                })
            })
            .collect();
        Ok(Response::new(DeadInstancesResponse { instances }))
    }
}
