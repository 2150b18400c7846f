%% The port_control commands of the corral_drv driver.
%%
%% This file is their only definition: src/corral.erl includes it, and the
%% driver's C++ header is generated from it when CMake configures
%% (c_src/protocol.cmake reads every line of the form
%% `-define(OP_NAME, Number).'). Keep to that form.
-define(OP_SPAWN, 1).
-define(OP_ACK, 2).
-define(OP_SIGNAL, 3).
-define(OP_CLOSE_STDIN, 4).
-define(OP_STOP, 5).
-define(OP_STATS, 6).
-define(OP_OSPID, 7).
-define(OP_SET_WINDOW, 8).
-define(OP_CGROUPS, 9).
-define(OP_CGROUP_V1, 10).
