// A hook returns a `Result`: its error decides between retry, refusal and failure.
use outbox::Context;

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn after_update(&self, _ctx: &mut Context<'_>, _user: &User) {}
}

fn main() {}
