//! The scenarios: [`flash`] (flash-sale and availability), [`omnichannel`], [`crash`].

pub mod crash;
pub mod flash;
pub mod omnichannel;
