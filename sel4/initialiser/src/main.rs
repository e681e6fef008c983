//! The initial task: everything is in `sel4-capdl-initializer` (patched),
//! which defines the root task's entry itself, as Microkit's wrapper does.
#![no_std]
#![no_main]

extern crate sel4_capdl_initializer;
