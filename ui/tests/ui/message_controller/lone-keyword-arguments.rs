// A lone `crate`, `self` or `super` is neither a model type nor a Diesel
// table: refused at the argument, naming it.
pub struct Users;

#[outbox::message_controller(model = crate, table = self)]
impl Users {}

pub struct Accounts;

#[outbox::message_controller(model = super, table = Self)]
impl Accounts {}

fn main() {}
