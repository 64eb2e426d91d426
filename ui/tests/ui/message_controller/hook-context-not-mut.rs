// The context is taken by mutable reference (its connection is `&mut`).
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn after_update(&self, _ctx: &Context<'_>, _user: &User) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
