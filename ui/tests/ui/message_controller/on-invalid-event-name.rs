// Custom event names follow `outbox::EventName`: `[a-z0-9_.-]`, 1 to 128 bytes.
use outbox::{Context, HandlerError, Message};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    #[on("Password Reset")]
    async fn password_reset(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
