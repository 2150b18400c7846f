%% cgget/cgset by v2 name and the statistics, on fake v1 leaves (plain
%% directories with the files the kernel would have): what corral_cgroup
%% reads and writes through the driver's table (c_src/common/cgroup_table.h).
%% Needs no root; the real kernel is in corral_cgroup_v1_test.exs.
-module(corral_cgroup_v1_tests).

-include_lib("eunit/include/eunit.hrl").

%% A temporary directory with a leaf per {Name, [{File, Content}]}.
with_leaves(Leaves, Test) ->
    Dir = string:trim(os:cmd("mktemp -d")),
    Paths = [
        begin
            Path = filename:join(Dir, Name),
            ok = file:make_dir(Path),
            [ok = file:write_file(filename:join(Path, F), C) || {F, C} <- Files],
            list_to_binary(Path)
        end
     || {Name, Files} <- Leaves
    ],
    try
        Test(Paths)
    after
        os:cmd("rm -rf " ++ Dir)
    end.

read(Leaf, File) ->
    {ok, T} = file:read_file(filename:join(Leaf, File)),
    T.

v1(Leaves) -> #{v2 => undefined, v1 => Leaves}.

memory_max_is_the_limit_in_bytes_test() ->
    with_leaves(
        [
            {"pids", [{"pids.max", "max\n"}]},
            {"memory", [
                {"memory.limit_in_bytes", "9223372036854771712\n"},
                {"memory.soft_limit_in_bytes", "9223372036854771712\n"},
                {"memory.memsw.limit_in_bytes", "9223372036854771712\n"},
                {"memory.usage_in_bytes", "4096\n"}
            ]}
        ],
        fun([_, Mem] = Leaves) ->
            D = v1(Leaves),
            ?assertEqual({ok, <<"max\n">>}, corral_cgroup:get(D, "memory.max")),
            ?assertEqual(ok, corral_cgroup:set(D, "memory.max", "64M")),
            ?assertEqual(<<"67108864">>, read(Mem, "memory.limit_in_bytes")),
            ?assertEqual({ok, <<"67108864\n">>}, corral_cgroup:get(D, <<"memory.max">>)),
            ?assertEqual(ok, corral_cgroup:set(D, "memory.max", max_as_text())),
            ?assertEqual(<<"-1">>, read(Mem, "memory.limit_in_bytes")),
            %% memsw is memory + swap.
            ok = file:write_file(filename:join(Mem, "memory.limit_in_bytes"), "1048576\n"),
            ?assertEqual(ok, corral_cgroup:set(D, "memory.swap.max", 1024)),
            ?assertEqual(<<"1049600">>, read(Mem, "memory.memsw.limit_in_bytes")),
            ?assertEqual({ok, <<"1024\n">>}, corral_cgroup:get(D, "memory.swap.max")),
            ?assertEqual({ok, <<"4096\n">>}, corral_cgroup:get(D, "memory.current")),
            %% Names v1 has as they are, read as they are.
            ?assertEqual({ok, <<"max\n">>}, corral_cgroup:get(D, "pids.max")),
            ?assertEqual({ok, <<"1048576\n">>}, corral_cgroup:get(D, "memory.limit_in_bytes"))
        end
    ).

max_as_text() -> [<<"ma">>, "x"].

cpu_max_and_weight_are_quota_period_and_shares_test() ->
    with_leaves(
        [
            {"cpu", [
                {"cpu.cfs_quota_us", "-1\n"},
                {"cpu.cfs_period_us", "100000\n"},
                {"cpu.shares", "1024\n"}
            ]}
        ],
        fun([Cpu] = Leaves) ->
            D = v1(Leaves),
            ?assertEqual({ok, <<"max 100000\n">>}, corral_cgroup:get(D, "cpu.max")),
            ?assertEqual({ok, <<"100\n">>}, corral_cgroup:get(D, "cpu.weight")),
            ?assertEqual(ok, corral_cgroup:set(D, "cpu.max", "5000 10000")),
            ?assertEqual(<<"5000">>, read(Cpu, "cpu.cfs_quota_us")),
            ?assertEqual(<<"10000">>, read(Cpu, "cpu.cfs_period_us")),
            ?assertEqual(ok, corral_cgroup:set(D, "cpu.weight", 50)),
            ?assertEqual(<<"512">>, read(Cpu, "cpu.shares")),
            ?assertEqual({ok, <<"50\n">>}, corral_cgroup:get(D, "cpu.weight"))
        end
    ).

errors_name_the_file_and_value_test() ->
    with_leaves(
        [
            {"pids", [{"pids.max", "max\n"}]},
            {"memory", [{"memory.limit_in_bytes", "1048576\n"}, {"memory.usage_in_bytes", "1\n"}]}
        ],
        fun([Pids, Mem] = Leaves) ->
            D = v1(Leaves),
            ?assertEqual(
                {error, {bad_cgroup_value, <<"memory.max">>, "lots"}},
                corral_cgroup:set(D, "memory.max", "lots")
            ),
            ?assertEqual(
                {error, {bad_cgroup_value, <<"memory.max">>, <<"1\0">>}},
                corral_cgroup:set(D, "memory.max", <<"1\0">>)
            ),
            ?assertEqual(<<"1048576\n">>, read(Mem, "memory.limit_in_bytes")),
            ?assertEqual(
                {error, {no_v1_equivalent, <<"memory.high">>}}, corral_cgroup:get(D, "memory.high")
            ),
            ?assertEqual(
                {error, {no_v1_equivalent, <<"memory.high">>}},
                corral_cgroup:set(D, "memory.high", "1M")
            ),
            %% Without a memory leaf, memory.high is simply not there.
            ?assertEqual(
                {error, {enoent, <<"memory.high">>}}, corral_cgroup:get(v1([Pids]), "memory.high")
            ),
            ?assertEqual(
                {error, {read_only, <<"memory.current">>}},
                corral_cgroup:set(D, "memory.current", 1)
            ),
            %% No memsw files: swap accounting is off.
            ?assertEqual(
                {error, {enoent, <<"memory.swap.max">>}}, corral_cgroup:get(D, "memory.swap.max")
            ),
            ?assertEqual({error, {enoent, <<"cpu.max">>}}, corral_cgroup:get(D, "cpu.max")),
            ?assertEqual({error, {enoent, <<"nosuch.file">>}}, corral_cgroup:get(D, "nosuch.file")),
            ?assertEqual(
                {error, {bad_cgroup_file, "../memory.max"}}, corral_cgroup:get(D, "../memory.max")
            )
        end
    ).

%% A v2 leaf's own file wins; the v1 cpu hierarchy adds its throttling,
%% in us, to the v2 leaf's cpu.stat.
v2_files_win_and_cpu_stat_is_merged_test() ->
    with_leaves(
        [
            {"v2", [
                {"memory.max", "max\n"},
                {"cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"}
            ]},
            {"cpu", [
                {"cpu.stat", "nr_periods 3\nnr_throttled 1\nthrottled_time 5000\n"},
                {"cpu.cfs_quota_us", "-1\n"},
                {"cpu.cfs_period_us", "100000\n"}
            ]},
            {"memory", [{"memory.limit_in_bytes", "4096\n"}]}
        ],
        fun([V2, Cpu, Mem]) ->
            D = #{v2 => V2, v1 => [Cpu, Mem]},
            ?assertEqual({ok, <<"max\n">>}, corral_cgroup:get(D, "memory.max")),
            ?assertEqual(
                #{
                    <<"cpu.stat">> => #{
                        <<"usage_usec">> => 10,
                        <<"user_usec">> => 6,
                        <<"system_usec">> => 4,
                        <<"nr_periods">> => 3,
                        <<"nr_throttled">> => 1,
                        <<"throttled_usec">> => 5
                    }
                },
                corral_cgroup:stats(D)
            ),
            ?assertEqual(
                #{
                    <<"cpu.stat">> => #{
                        <<"nr_periods">> => 3, <<"nr_throttled">> => 1, <<"throttled_usec">> => 5
                    }
                },
                corral_cgroup:stats(v1([Cpu]))
            )
        end
    ).

%% The driver's port that answers the conversions leaves nothing in the
%% mailbox of a caller that traps exits (Corral.Process asks for stats in
%% its gen_server).
a_caller_trapping_exits_gets_no_message_test() ->
    with_leaves(
        [{"memory", [{"memory.limit_in_bytes", "4096\n"}, {"memory.usage_in_bytes", "1\n"}]}],
        fun(Leaves) ->
            Self = self(),
            spawn_link(fun() ->
                process_flag(trap_exit, true),
                {ok, <<"4096\n">>} = corral_cgroup:get(v1(Leaves), "memory.max"),
                #{<<"memory.current">> := 1} = corral_cgroup:stats(v1(Leaves)),
                receive
                after 100 -> ok
                end,
                Self ! {left, process_info(self(), messages)}
            end),
            receive
                {left, Left} -> ?assertEqual({messages, []}, Left)
            end
        end
    ).
