// A `before_` hook takes the model by value and returns it.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn before_update(&self, _ctx: &mut Context<'_>, _user: &User) -> Result<User, HandlerError> {
        Ok(User)
    }
}

fn main() {}
