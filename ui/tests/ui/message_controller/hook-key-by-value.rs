// Destroy hooks take the key by reference.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn before_destroy(&self, _ctx: &mut Context<'_>, _id: i64) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
