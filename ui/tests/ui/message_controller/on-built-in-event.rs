// `#[on("updated")]` would clash with the built-in event: replace it with `async fn updated`.
use outbox::{Context, HandlerError, Message};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    #[on("updated")]
    async fn user_updated(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
