// A hook with an argument the consumer cannot give.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn after_update(&self, _ctx: &mut Context<'_>, _user: &User, _old: &User) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
