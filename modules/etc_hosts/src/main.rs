fn main() -> std::process::ExitCode {
    matrix_ha_runtime::main(&etc_hosts::SPEC, etc_hosts::run)
}
