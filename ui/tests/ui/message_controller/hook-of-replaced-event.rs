// The hooks of an event whose handling is replaced would never run.
use outbox::{Context, HandlerError, Message};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn destroyed(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn after_destroy(&self, _ctx: &mut Context<'_>, _id: &i64) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
