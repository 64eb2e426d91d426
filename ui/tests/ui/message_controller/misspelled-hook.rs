// A misspelt hook is an error with the nearest hook, not a helper that never runs.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn befor_update(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        Ok(user)
    }
}

fn main() {}
