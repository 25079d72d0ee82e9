"""The matminer source through matminer's own loading code, on a small file in the dataset's
own format, where matminer looks for it."""

import pytest
from matminer.datasets import get_dataset_attribute
from pymatgen.core import Lattice, Structure

from xrdsym.errors import XrdsymError
from xrdsym.sources.matminer import DATASET, dataset_path, iter_matminer


@pytest.fixture
def magnesium() -> Structure:
    """Mg, hcp, P6_3/mmc."""
    return Structure.from_spacegroup(
        "P6_3/mmc", Lattice.hexagonal(3.21, 5.21), ["Mg"], [[1 / 3, 2 / 3, 0.25]]
    )


def test_every_structure_comes_with_its_material_id(tmp_path, write_mp_all, rock_salt, rutile):
    write_mp_all(tmp_path, {"mp-22862": rock_salt, "mp-2657": rutile})

    records = list(iter_matminer(tmp_path, None, seed=0))

    assert [record.id for record in records] == ["mp-22862", "mp-2657"]
    assert {record.source for record in records} == {"matminer"}
    assert records[1].meta == {"material_id": "mp-2657", "dataset": DATASET}
    assert records[1].structure == rutile


def test_a_limit_draws_that_many_from_the_file_already_there(
    tmp_path, write_mp_all, no_network, rock_salt, rutile, magnesium
):
    write_mp_all(tmp_path, {"mp-22862": rock_salt, "mp-2657": rutile, "mp-153": magnesium})

    drawn = [record.id for record in iter_matminer(tmp_path, 2, seed=3)]
    again = [record.id for record in iter_matminer(tmp_path, 2, seed=3)]
    everything = [record.id for record in iter_matminer(tmp_path, None, seed=3)]

    assert everything == ["mp-22862", "mp-2657", "mp-153"]
    assert len(drawn) == 2 and set(drawn) < set(everything)
    assert drawn == again
    # Kept in the dataset's order.
    assert drawn == [material_id for material_id in everything if material_id in drawn]


def test_offline_one_line_names_the_file_its_checksum_url_and_folder(tmp_path, no_network):
    data_home = tmp_path / "matminer"

    with pytest.raises(XrdsymError) as error:
        list(iter_matminer(data_home, None, seed=0))

    message = str(error.value)
    assert "\n" not in message
    assert f"{DATASET}.json.gz" in message
    assert get_dataset_attribute(DATASET, "hash") in message
    assert get_dataset_attribute(DATASET, "url") in message
    assert f"put it in {data_home}/" in message
    assert not dataset_path(data_home).exists()


def test_a_file_that_fails_the_checksum_is_refused_with_one_line(
    tmp_path, write_mp_all, no_network, rock_salt
):
    path = write_mp_all(tmp_path, {"mp-22862": rock_salt})
    path.write_bytes(path.read_bytes()[:-20])  # as an interrupted download leaves it

    with pytest.raises(XrdsymError, match="delete it to download it again") as error:
        list(iter_matminer(tmp_path, None, seed=0))

    assert "\n" not in str(error.value)
