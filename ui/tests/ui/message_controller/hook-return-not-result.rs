// A hook returns a `Result`, not an `Option`.
use outbox::Context;

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn before_update(&self, _ctx: &mut Context<'_>, user: User) -> Option<User> {
        Some(user)
    }
}

fn main() {}
