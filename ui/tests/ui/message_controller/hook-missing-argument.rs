// A hook without its context argument.
use outbox::HandlerError;

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn before_update(&self, user: User) -> Result<User, HandlerError> {
        Ok(user)
    }
}

fn main() {}
