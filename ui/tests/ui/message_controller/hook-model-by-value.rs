// An `after_` hook takes the model by reference: it is already written.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn after_update(&self, _ctx: &mut Context<'_>, _user: User) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
