// Hooks take `&self`: the consumer shares one controller between partitions.
use outbox::{Context, HandlerError};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn after_update(&mut self, _ctx: &mut Context<'_>, _user: &User) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
