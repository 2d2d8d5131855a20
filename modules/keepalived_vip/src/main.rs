fn main() -> std::process::ExitCode {
    matrix_ha_runtime::main(&keepalived_vip::SPEC, keepalived_vip::run)
}
