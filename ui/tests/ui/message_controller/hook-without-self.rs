// Hooks are methods: an associated function without `&self` is not one.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn after_update(_ctx: &mut Context<'_>, _user: &User) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
