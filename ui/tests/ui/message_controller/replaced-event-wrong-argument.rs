// A replaced event takes the message, not the model.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn updated(&self, _ctx: &mut Context<'_>, _user: User) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
