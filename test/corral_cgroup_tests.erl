%% The cgroup options as corral_opts normalizes them: every form becomes
%% one request map of v2 file names and values, and bad input is named.
%% (The limits themselves are proven in corral_cgroup_test.exs.)
-module(corral_cgroup_tests).

-include_lib("eunit/include/eunit.hrl").

request(Opts) ->
    {ok, #{request := R}} = corral_opts:normalize("true", [], Opts, open),
    maps:get(cgroup, R, none).

no_cgroup_option_no_cgroup_request_test() ->
    ?assertEqual(none, request([])).

muontrap_keys_become_v2_files_sorted_test() ->
    ?assertEqual(
        #{
            base => <<"jobs">>,
            path => <<>>,
            controllers => [],
            settings => [
                <<"cpu.idle">>, <<"1">>,
                <<"cpu.max">>, <<"10000 100000">>,
                <<"cpu.weight">>, <<"50">>,
                <<"cpuset.cpus">>, <<"0-1">>,
                <<"io.weight">>, <<"200">>,
                <<"memory.max">>, <<"67108864">>,
                <<"memory.oom.group">>, <<"1">>,
                <<"memory.swap.max">>, <<"max">>,
                <<"pids.max">>, <<"50">>
            ]
        },
        request([
            {cgroup_base, "jobs"},
            {cgroup, #{
                memory_swap_max => infinity,
                pids_max => 50,
                cpu_max => {10000, 100000},
                memory_max => 67108864,
                cpu_weight => 50,
                cpu_idle => true,
                memory_oom_group => true,
                io_weight => 200,
                cpuset_cpus => "0-1"
            }}
        ])
    ).

raw_files_and_muontrap1_forms_share_the_mechanism_test() ->
    ?assertEqual(
        #{
            base => <<>>,
            path => <<"job1">>,
            controllers => [<<"cpu">>, <<"memory">>],
            settings => [
                <<"memory.high">>, <<"max">>,
                <<"memory.limit_in_bytes">>, <<"1000">>
            ]
        },
        request([
            {cgroup_path, <<"job1">>},
            {cgroup, #{"memory.high" => max}},
            {cgroup_controllers, [cpu]},
            {cgroup_sets, [{"memory", "memory.limit_in_bytes", 1000}]}
        ])
    ).

bad_values_name_the_key_and_value_test_() ->
    Err = fun(Opts) -> corral_opts:normalize("true", [], Opts, open) end,
    [
        ?_assertEqual(
            {error, {bad_option, {cgroup, memory_max}, -1}}, Err([{cgroup, #{memory_max => -1}}])
        ),
        ?_assertEqual(
            {error, {bad_option, {cgroup, cpu_max}, {10, 100}}},
            Err([{cgroup, #{cpu_max => {10, 100}}}])
        ),
        ?_assertEqual(
            {error, {bad_option, {cgroup, cpu_weight}, 0}}, Err([{cgroup, #{cpu_weight => 0}}])
        ),
        ?_assertEqual(
            {error, {bad_option, {cgroup, cpuset_cpus}, "x"}}, Err([{cgroup, #{cpuset_cpus => "x"}}])
        ),
        ?_assertEqual(
            {error, {unknown_option, {cgroup, memory_maxx}}}, Err([{cgroup, #{memory_maxx => 1}}])
        ),
        ?_assertEqual(
            {error, {bad_option, {cgroup, "cgroup/procs"}, "cgroup/procs"}},
            Err([{cgroup, #{"cgroup/procs" => 1}}])
        ),
        ?_assertEqual({error, {bad_option, cgroup, [1]}}, Err([{cgroup, [1]}])),
        ?_assertEqual({error, {bad_option, cgroup_base, "../up"}}, Err([{cgroup_base, "../up"}])),
        ?_assertEqual(
            {error, {bad_option, cgroup_path, "p"}}, Err([{cgroup_base, "b"}, {cgroup_path, "p"}])
        ),
        ?_assertEqual(
            {error, {bad_option, cgroup_controllers, "Mem"}}, Err([{cgroup_controllers, ["Mem"]}])
        ),
        ?_assertEqual(
            {error, {bad_option, cgroup_sets, {"memory", "x"}}},
            Err([{cgroup_sets, [{"memory", "x"}]}])
        )
    ].

cgroup_file_names_test() ->
    ?assertEqual({ok, <<"memory.peak">>}, corral_cgroup:check_file("memory.peak")),
    ?assertEqual({error, {bad_cgroup_file, "a/b"}}, corral_cgroup:check_file("a/b")),
    ?assertEqual({error, {bad_cgroup_file, ".."}}, corral_cgroup:check_file("..")),
    ?assertEqual({error, {bad_cgroup_file, ""}}, corral_cgroup:check_file("")).

%% v1 figures under v2 names, from a fake v1 memory and pids leaf.
v1_stats_are_translated_test() ->
    Dir = string:trim(os:cmd("mktemp -d")),
    Mem = filename:join(Dir, "m"),
    Pids = filename:join(Dir, "p"),
    ok = file:make_dir(Mem),
    ok = file:make_dir(Pids),
    W = fun(D, F, T) -> ok = file:write_file(filename:join(D, F), T) end,
    W(Mem, "memory.usage_in_bytes", "4096\n"),
    W(Mem, "memory.max_usage_in_bytes", "8192\n"),
    W(Mem, "memory.failcnt", "3\n"),
    W(Mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"),
    W(Pids, "pids.current", "2\n"),
    try
        ?assertEqual(
            #{
                <<"memory.current">> => 4096,
                <<"memory.peak">> => 8192,
                <<"memory.events">> => #{<<"max">> => 3, <<"oom_kill">> => 1},
                <<"pids.current">> => 2
            },
            corral_cgroup:stats(#{v2 => undefined, v1 => [list_to_binary(Mem), list_to_binary(Pids)]})
        )
    after
        os:cmd("rm -rf " ++ Dir)
    end.
