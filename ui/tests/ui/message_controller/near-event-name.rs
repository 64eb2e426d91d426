// `update` is a typo of the `updated` event handler, not a helper.
use outbox::{Context, HandlerError, Message};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn update(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
