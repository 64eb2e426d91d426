// Hooks are `async fn`: they run queries on the context's async connection.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    fn after_update(&self, _ctx: &mut Context<'_>, _user: &User) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
