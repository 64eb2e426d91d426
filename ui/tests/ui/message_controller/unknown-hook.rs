// A `before_`/`after_` name that is no hook: the hooks are listed.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn before_save(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        Ok(user)
    }
}

fn main() {}
